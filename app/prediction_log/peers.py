"""Reading records in the other workers' live spool segments (read-after-write on one host).

All workers of a host share the spool directory. A record answered by worker A is in A's segment
from the moment the response is sent (the write, and with ``fsync`` the sync, comes first), until
A has committed it and retired the segment. So a worker that finds an id neither in its own buffer
nor in the database looks here. Lines are only appended, and a torn last line is skipped: it was
never acknowledged. Blocking: run in a thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.prediction_log.records import FEEDBACK, PREDICTION, decode_entry
from app.prediction_log.segments import SEGMENT_GLOB, SpoolFiles, split_lines

Row = dict[str, Any]


@dataclass
class PeerRecords:
    predictions: dict[uuid.UUID, Row] = field(default_factory=dict)  # id -> row
    feedback: dict[uuid.UUID, dict[uuid.UUID, Row]] = field(default_factory=dict)  # pid -> id -> row


class PeerReader:
    """This host's spool directory minus this worker's own segments, read in a thread."""

    def __init__(self, *, directory: Path, files: SpoolFiles | None) -> None:
        self._directory = directory
        self._files = files

    async def records(self, ids: Collection[uuid.UUID]) -> PeerRecords:
        own = self._files.own if self._files is not None else frozenset()
        return await asyncio.to_thread(scan, self._directory, own, ids)


def scan(directory: Path, exclude: Collection[Path], ids: Collection[uuid.UUID]) -> PeerRecords:
    """Predictions with these ids, and feedback about them, in segments not in ``exclude``."""
    found = PeerRecords()
    needles = {str(i).encode(): i for i in ids}
    if not needles or not directory.exists():
        return found
    for path in directory.glob(SEGMENT_GLOB):
        if path in exclude:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # retired while we looked: its rows are committed
            continue
        hits = [n for n in needles if n in data]  # a substring search; most files have none
        if not hits:
            continue
        for line in split_lines(data)[0]:
            for needle in hits:
                if needle in line:
                    _collect(found, line, needles[needle])
    return found


def _collect(found: PeerRecords, line: bytes, wanted: uuid.UUID) -> None:
    try:
        kind, row = decode_entry(line)
    except ValueError:
        return  # a damaged line: its owner (or the adopter) quarantines it
    if kind == PREDICTION and row["id"] == wanted:
        found.predictions[wanted] = row
    elif kind == FEEDBACK and row["prediction_id"] == wanted:
        found.feedback.setdefault(wanted, {})[row["id"]] = row
