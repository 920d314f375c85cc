"""SpoolFiles, the one owner of a worker's segments: a segment is deleted exactly when it is
closed and every record in it is settled; at shutdown the unsettled ones stay for adoption."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.prediction_log.segments import SEGMENT_GLOB, SpoolFiles


def _files(directory: Path, worker: str = "w1") -> SpoolFiles:
    files = SpoolFiles(directory=directory, worker=worker, sync=False, segment_max_bytes=1024)
    files.open()
    return files


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(SEGMENT_GLOB))


def test_a_rotated_segment_is_deleted_when_its_last_record_settles(tmp_path: Path) -> None:
    files = _files(tmp_path)
    first, closed = files.write(b"x" * 1000 + b"\n", sync=False)
    assert closed is None
    files.hold(first, 1)
    second, closed = files.write(b"y" * 100 + b"\n", sync=False)  # over 1024 bytes: rotation
    assert closed is first and second is not first
    files.closed(closed)
    assert first.path.exists(), "closed, but its record is not settled yet"
    files.hold(second, 1)
    files.settle([first])
    assert not first.path.exists() and first.path not in files.own
    assert _names(tmp_path) == [second.path.name]


def test_shutdown_keeps_unsettled_segments_and_another_worker_adopts_them(tmp_path: Path) -> None:
    files = _files(tmp_path)
    segment, _ = files.write(b'{"not": "validated here"}\n', sync=False)
    files.hold(segment, 1)
    files.close()
    assert _names(tmp_path) == [segment.path.name] and files.own == frozenset()

    other = _files(tmp_path, "w2")

    adopted = asyncio.run(other.adopt_orphans(lambda line: None))
    assert [a.segment.path for a in adopted] == [segment.path] and segment.path in other.own
    other.hold(adopted[0].segment, 1)
    other.settle([adopted[0].segment])  # adopted segments are closed: settled means deleted
    assert _names(tmp_path) == []


def test_shutdown_deletes_a_settled_active_segment(tmp_path: Path) -> None:
    files = _files(tmp_path)
    segment, _ = files.write(b"z\n", sync=False)
    files.hold(segment, 1)
    files.settle([segment])
    assert segment.path.exists()  # still the active segment
    files.close()
    assert _names(tmp_path) == []
