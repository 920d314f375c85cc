"""Records spooled but not yet committed to the database, in arrival order.

Only the event loop touches this (no locks): the writer adds after a record is durable, the
drainer peeks at the head, writes it, then acknowledges it; a segment whose records are all
acknowledged is retired.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass

from app.services.spool import Segment


@dataclass(frozen=True)
class PendingRecord:
    id: uuid.UUID
    line: bytes
    segment: Segment | None
    at: float  # monotonic time it was spooled


class PendingBuffer:
    def __init__(self) -> None:
        self._queue: deque[PendingRecord] = deque()
        self._by_id: dict[uuid.UUID, PendingRecord] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, ids: list[uuid.UUID], lines: list[bytes], segment: Segment | None) -> None:
        now = time.monotonic()
        for rid, line in zip(ids, lines, strict=True):
            rec = PendingRecord(rid, line, segment, now)
            self._queue.append(rec)
            self._by_id[rid] = rec
            self.bytes += len(line)
        if segment is not None:
            segment.outstanding += len(lines)

    def head(self, n: int) -> list[PendingRecord]:
        return [self._queue[i] for i in range(min(n, len(self._queue)))]

    def ack(self, n: int) -> list[Segment]:
        """Drop the first ``n`` records (committed); returns segments that may now be retired."""
        done: list[Segment] = []
        for _ in range(n):
            rec = self._queue.popleft()
            if self._by_id.get(rec.id) is rec:
                del self._by_id[rec.id]
            self.bytes -= len(rec.line)
            seg = rec.segment
            if seg is not None:
                seg.outstanding -= 1
                if seg.outstanding == 0 and seg.closed:
                    done.append(seg)
        return done

    def get(self, rid: uuid.UUID) -> PendingRecord | None:
        return self._by_id.get(rid)

    def oldest_age(self) -> float:
        return time.monotonic() - self._queue[0].at if self._queue else 0.0

    def segments(self) -> set[Segment]:
        return {r.segment for r in self._queue if r.segment is not None}
