"""Spool segments: daily JSONL files per worker, each held under an ``flock`` by its owner.

A segment is named ``predictions-YYYYMMDD-<worker>.jsonl`` (``-<n>`` is added when the name is
taken, e.g. after a restart with the same worker id, or at rotation by size). The owner holds an
exclusive ``flock`` on the segment for as long as it lives, so any other process that gets the lock
knows the owner is dead and may adopt the segment (drain it, then delete it). A new segment is
created under a hidden temporary name, locked, and only then linked under its final name, so no
scanner can ever lock a live worker's segment in the gap between creation and locking.

Blocking file work here is plain synchronous code; callers run it in a thread where it may block.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_GLOB = "predictions-*.jsonl"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    size: int = 0
    day: str = ""
    # Records appended (or adopted) and not yet committed to the database.
    outstanding: int = 0
    # No more appends: the segment is retired as soon as ``outstanding`` reaches 0.
    closed: bool = False
    retired: bool = False

    def write(self, data: bytes, sync: bool) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            if sync:
                os.fdatasync(self.fd)
        except OSError:
            # Cut a partial write off, so the next append does not glue onto half a line.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def retire(self) -> None:
        """Delete the segment (every row is committed) and let go of its lock."""
        if self.retired:
            return
        self.retired = True
        try:
            self.path.unlink(missing_ok=True)  # unlinked while still locked: no one can adopt it
        finally:
            os.close(self.fd)

    def release(self) -> None:
        """Keep the file (rows not yet committed) but drop the lock, for the next start to adopt."""
        if not self.retired:
            self.retired = True
            os.close(self.fd)


def today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment(directory: Path, worker: str, day: str, sync: bool) -> Segment:
    """A new, locked, empty segment under the first free name for (day, worker)."""
    tmp = directory / f".new-{worker}-{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        n = 0
        while True:
            suffix = "" if n == 0 else f"-{n}"
            path = directory / f"predictions-{day}-{worker}{suffix}.jsonl"
            try:
                os.link(tmp, path)  # atomic and never overwrites an existing segment
                break
            except FileExistsError:
                n += 1
        tmp.unlink()
        if sync:
            fsync_dir(directory)  # the name itself must survive a crash
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return Segment(path=path, fd=fd, day=day)


@dataclass
class AdoptedSegment:
    segment: Segment
    lines: list[bytes]
    damaged: int = 0
    torn_tail: bool = False


def try_lock(path: Path) -> int | None:
    """An fd holding the segment's lock, or None when a live owner holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # the owner may have retired (unlinked) it between our open and our lock
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
    except FileNotFoundError:
        os.close(fd)
        return None
    return fd


def split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Complete lines, and whether a torn final line (a write cut short by a crash) was dropped.

    A torn line was never acknowledged: the response waits for the whole write (and the fsync).
    """
    if not data:
        return [], False
    parts = data.split(b"\n")
    tail = parts.pop()
    return [p + b"\n" for p in parts if p.strip()], bool(tail.strip())


def adopt(path: Path, quarantine: Path, validate: Callable[[bytes], object]) -> AdoptedSegment | None:
    """Lock and read a segment whose owner is dead; None if its owner is alive."""
    fd = try_lock(path)
    if fd is None:
        return None
    chunks: list[bytes] = []
    while chunk := os.pread(fd, 1 << 20, sum(len(c) for c in chunks)):
        chunks.append(chunk)
    data = b"".join(chunks)
    lines, torn = split_lines(data)
    good, bad = [], []
    for line in lines:
        try:
            validate(line)
            good.append(line)
        except ValueError:
            bad.append(line)
    if bad:  # never silently lost: kept aside for a human, and reported
        quarantine.mkdir(parents=True, exist_ok=True)
        with open(quarantine / path.name, "ab") as out:
            out.writelines(bad)
            out.flush()
            os.fsync(out.fileno())
        log.error("spool: %d damaged lines of %s moved to %s", len(bad), path.name, quarantine)
    if torn:
        log.warning("spool: %s ends with a torn line (an unacknowledged write); ignored", path.name)
    segment = Segment(path=path, fd=fd, size=len(data), closed=True)
    return AdoptedSegment(segment, good, len(bad), torn)


def orphan_paths(directory: Path, own: set[Path]) -> list[Path]:
    return sorted(p for p in directory.glob(SEGMENT_GLOB) if p not in own)


@dataclass
class SegmentInfo:
    path: Path
    size: int
    lines: int
    live: bool  # a running worker holds it


def describe(directory: Path) -> list[SegmentInfo]:
    """What ``spool status`` shows; probes each lock without keeping it."""
    infos = []
    for path in sorted(directory.glob(SEGMENT_GLOB)) if directory.exists() else []:
        fd = try_lock(path)
        live = fd is None
        if fd is not None:
            os.close(fd)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        infos.append(SegmentInfo(path, len(data), len(split_lines(data)[0]), live))
    return infos


# A fully drained active segment at least this big is rotated out (and deleted) at the next append.
ROTATE_DRAINED_BYTES = 1 << 20


class SpoolFiles:
    """The one owner of this worker's segments: the active one, closed ones not yet drained, and
    adopted ones. Writer, drainer and shutdown change segment state only through these methods.

    ``write`` is blocking file work (the writer runs it in a thread); every other method runs on
    the event loop, which owns the record counts.
    """

    def __init__(self, *, directory: Path, worker: str, sync: bool, segment_max_bytes: int) -> None:
        self.directory = directory
        self.worker = worker
        self.sync = sync
        self.segment_max_bytes = segment_max_bytes
        self.active: Segment | None = None
        self._segments: dict[Path, Segment] = {}  # every segment this worker holds the lock of
        self.created = 0  # segments created by this worker so far
        # Set when the active segment is fully drained and big: the next append starts a new one,
        # so the drained one is deleted and the files other workers scan stay small.
        self._rotate_next = False

    @property
    def own(self) -> frozenset[Path]:
        """Paths of the segments this worker holds (other workers' segments are the rest)."""
        return frozenset(self._segments)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".new-*.tmp"):  # creation interrupted by a crash
            fd = try_lock(stale)
            if fd is not None:
                stale.unlink(missing_ok=True)
                os.close(fd)

    def write(self, data: bytes, *, sync: bool) -> tuple[Segment, Segment | None]:
        """Append ``data``, rotating by day or size; also returns the segment rotation closed,
        which the caller hands to ``closed`` on the event loop. Blocking."""
        segment, closed = self._segment_for(len(data))
        segment.write(data, sync)
        return segment, closed

    def _segment_for(self, nbytes: int) -> tuple[Segment, Segment | None]:
        day = today()
        current = self.active
        if current is not None and current.day == day and (
            current.size == 0
            or (current.size + nbytes <= self.segment_max_bytes and not self._rotate_next)
        ):
            return current, None
        self._rotate_next = False
        self.active = create_segment(self.directory, self.worker, day, self.sync)
        self._segments[self.active.path] = self.active
        self.created += 1
        return self.active, current

    def closed(self, segment: Segment | None) -> None:
        """No more appends go to ``segment``; it is retired once its records are settled."""
        if segment is None:
            return
        segment.closed = True
        if segment.outstanding == 0:
            self._retire(segment)

    def hold(self, segment: Segment | None, records: int) -> None:
        """``records`` lines of ``segment`` are now pending for the database."""
        if segment is not None:
            segment.outstanding += records

    def settle(self, segments: Iterable[Segment | None]) -> None:
        """One record of each listed segment (a segment once per record) is settled."""
        for segment in segments:
            if segment is None:
                continue
            segment.outstanding -= 1
            if segment.outstanding == 0 and segment.closed:
                self._retire(segment)

    async def adopt_orphans(self, validate: Callable[[bytes], object]) -> list[AdoptedSegment]:
        """Lock every segment whose owner is dead and take it over (closed: no appends); the
        file work runs in a thread. Adopted segments without records are deleted at once."""
        taken = await asyncio.to_thread(self._lock_orphans, set(self._segments), validate)
        for adopted in taken:
            if adopted.lines:
                self._segments[adopted.segment.path] = adopted.segment
            else:
                adopted.segment.retire()
        return [a for a in taken if a.lines]

    def _lock_orphans(self, own: set[Path], validate: Callable[[bytes], object]) -> list[AdoptedSegment]:
        found = (adopt(path, self.directory / "quarantine", validate)
                 for path in orphan_paths(self.directory, own))
        return [a for a in found if a is not None]  # None: its owner is alive

    def drained(self) -> None:
        """Everything pending is settled: a big active segment is rotated out at the next append."""
        active = self.active
        if active is not None and active.outstanding == 0 and active.size >= ROTATE_DRAINED_BYTES:
            self._rotate_next = True

    def close(self) -> None:
        """At shutdown: delete settled segments, unlock the others for the next start to adopt."""
        for segment in list(self._segments.values()):
            if segment.outstanding == 0:
                self._retire(segment)
            else:
                segment.release()
                self._segments.pop(segment.path, None)

    def _retire(self, segment: Segment) -> None:
        segment.retire()
        self._segments.pop(segment.path, None)
