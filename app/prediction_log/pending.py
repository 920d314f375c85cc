"""Records spooled but not yet committed to the database, in arrival order.

Only the event loop touches this (no locks): the log adds after a record is durable, the
drainer takes from the head, writes, then acknowledges exactly the records it settled (written or
dead-lettered), so a record that cannot be settled yet never holds back the ones behind it.
Feedback whose prediction is not in the database yet is *parked*: kept (and its segment with it)
but out of the queue until it is due for another look.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.prediction_log.records import FEEDBACK, PREDICTION
from app.prediction_log.segments import Segment


@dataclass(eq=False)  # identity semantics: the same line may legitimately be adopted twice
class PendingRecord:
    id: uuid.UUID
    kind: str
    line: bytes
    segment: Segment | None
    at: float  # monotonic time it was spooled
    prediction_id: uuid.UUID | None = None  # feedback: the prediction it is about
    unmatched_since: float | None = None  # feedback: first seen without its prediction in the DB
    created_at: datetime | None = None  # set by the admin paths, which decode every line anyway
    # The table row of a record this worker made (the drainer then never decodes its line);
    # None for adopted lines, which are decoded when written.
    row: dict[str, Any] | None = field(default=None, repr=False)


class PendingBuffer:
    def __init__(self) -> None:
        self._queue: dict[PendingRecord, None] = {}  # an ordered set
        self._parked: dict[PendingRecord, float] = {}  # record -> monotonic time it is due
        self._by_id: dict[uuid.UUID, PendingRecord] = {}  # predictions
        self._feedback: dict[uuid.UUID | None, list[PendingRecord]] = {}  # prediction id -> feedback
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._queue) + len(self._parked)

    @property
    def ready(self) -> int:
        return len(self._queue)

    @property
    def parked(self) -> int:
        return len(self._parked)

    def add(
        self, ids: list[uuid.UUID], lines: list[bytes], segment: Segment | None,
        kind: str = PREDICTION, prediction_ids: list[uuid.UUID | None] | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> None:
        now = time.monotonic()
        refs: list[uuid.UUID | None] = prediction_ids or [None] * len(ids)
        table_rows: list[dict[str, Any] | None] = list(rows) if rows is not None else [None] * len(ids)
        for rid, line, ref, row in zip(ids, lines, refs, table_rows, strict=True):
            rec = PendingRecord(rid, kind, line, segment, now, ref, row=row)
            self._queue[rec] = None
            if kind == FEEDBACK:
                self._feedback.setdefault(ref, []).append(rec)
            else:
                self._by_id[rid] = rec
            self.bytes += len(line)

    def head(self, n: int) -> list[PendingRecord]:
        out: list[PendingRecord] = []
        for rec in self._queue:
            if len(out) >= n:
                break
            out.append(rec)
        return out

    def ack(self, records: Iterable[PendingRecord]) -> list[Segment]:
        """Forget settled records; returns their segments, once per record (for ``SpoolFiles.settle``)."""
        done: list[Segment] = []
        for rec in records:
            if rec in self._queue:
                del self._queue[rec]
            elif self._parked.pop(rec, None) is None:
                continue  # not (or no longer) pending
            if rec.kind == FEEDBACK:
                siblings = self._feedback.get(rec.prediction_id, [])
                if rec in siblings:
                    siblings.remove(rec)
                if not siblings:
                    self._feedback.pop(rec.prediction_id, None)
            elif self._by_id.get(rec.id) is rec:
                del self._by_id[rec.id]
            self.bytes -= len(rec.line)
            if rec.segment is not None:
                done.append(rec.segment)
        return done

    def park(self, records: Iterable[PendingRecord], due: float) -> None:
        for rec in records:
            if rec in self._queue:
                del self._queue[rec]
                self._parked[rec] = due

    def unpark_due(self, now: float | None = None, everything: bool = False) -> int:
        """Move parked records whose time has come back to the queue; how many moved."""
        now = time.monotonic() if now is None else now
        due = [r for r, t in self._parked.items() if everything or t <= now]
        for rec in due:
            del self._parked[rec]
            self._queue[rec] = None
        return len(due)

    def next_due(self) -> float | None:
        return min(self._parked.values(), default=None)

    def get(self, rid: uuid.UUID | None) -> PendingRecord | None:
        return self._by_id.get(rid) if rid is not None else None

    def feedback_for(self, prediction_id: uuid.UUID) -> list[PendingRecord]:
        return list(self._feedback.get(prediction_id, ()))

    def oldest_age(self) -> float:
        """Age of the oldest record waiting for a write (parked feedback waits by design)."""
        first = next(iter(self._queue), None)
        return time.monotonic() - first.at if first is not None else 0.0

    def segments(self) -> set[Segment]:
        return {r.segment for r in (*self._queue, *self._parked) if r.segment is not None}
