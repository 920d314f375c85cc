"""The prediction log: every answered prediction becomes exactly one ``prediction`` row.

``record`` appends the request's records to the local spool and returns once they are as durable
as ``FS_SPOOL_DURABILITY`` promises; only then is the response sent. A drainer task moves spooled
records into the database (``app.prediction_log.drainer``); segments left by dead workers or a crashed
process are adopted and drained at start-up and every ``orphan_scan_interval_s``. The spool is
bounded: when full, ``record`` raises ``PredictionLogFull`` (503 + Retry-After) unless fail-open.
Feedback is spooled the same way (``record_feedback``). Reads look in this worker's buffer, the
database, then the other workers' live segments on this host (``app.prediction_log.peers``); an
id made a moment ago by another replica is waited for, bounded, until its drain brings it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import SpoolSettings
from app.db.session import read_only
from app.db.tables import Prediction
from app.errors import DatabaseUnavailable, PredictionLogFull
from app.metrics import ServiceMetrics
from app.prediction_log.dead_letters import DeadLetterStore
from app.prediction_log.drainer import Drainer
from app.prediction_log.ids import created_at
from app.prediction_log.ingest import LogSink
from app.prediction_log.peers import PeerReader, PeerRecords, Row
from app.prediction_log.pending import PendingBuffer
from app.prediction_log.records import FEEDBACK, FeedbackRecord, PredictionRecord, decode, encode
from app.prediction_log.segments import Segment, SpoolFiles
from app.prediction_log.writer import SpoolWriteError, SpoolWriter

__all__ = ["PredictionLog", "PredictionRecord"]

log = logging.getLogger(__name__)

_UNAVAILABLE = "the prediction database is unavailable; retry shortly"


def default_worker_id() -> str:
    return f"p{os.getpid()}"


class PredictionLog:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: SpoolSettings,
        metrics: ServiceMetrics,
        directory: Path,
    ) -> None:
        self._engine = engine
        self.settings = settings
        self._metrics = metrics
        self.directory = directory
        self.worker = settings.worker_id or default_worker_id()
        self.files = (
            SpoolFiles(directory=directory, worker=self.worker, sync=settings.durability == "fsync",
                       segment_max_bytes=settings.segment_max_bytes)
            if settings.durability != "none" else None
        )
        self.buffer = PendingBuffer()
        self.writer = SpoolWriter(files=self.files, durability=settings.durability,
                                  group_commit_wait_ms=settings.group_commit_wait_ms)
        self.sink = LogSink(engine=engine, method=settings.ingest_method,
                            clock_skew_s=settings.clock_skew_s)
        self.dead_letters = DeadLetterStore(directory)
        self._peers = PeerReader(directory=directory, files=self.files)
        self.drainer = Drainer(
            buffer=self.buffer, sink=self.sink, settings=settings, metrics=metrics,
            dead_letters=self.dead_letters, files=self.files, peers=self._peers,
        )
        self._reserved = 0  # bytes being written to the spool, not yet in the buffer
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.files is not None:
            await asyncio.to_thread(self.files.open)
        # Segments of dead workers (or of this worker's previous life) are drained first.
        await self.drainer.adopt_orphans()
        await self.drainer.count_dead_letters()
        self.writer.start()
        self.drainer.start()
        self._started = True

    async def stop(self) -> None:
        """Drain everything to the database (bounded by ``drain_timeout_s``), then close.

        Whatever cannot be written stays in the spool segments for the next start to adopt.
        """
        if not self._started:
            return
        self._started = False
        await self.writer.stop()
        drained = await self.drainer.drain(self.settings.drain_timeout_s)
        await self.drainer.stop()
        if not drained:
            left = len(self.buffer)
            if self.settings.durability == "none":
                self._metrics.spool_dropped.inc(left)
                log.error("prediction log: %d records lost at shutdown (durability none)", left)
            else:
                log.error("prediction log: %d records left in the spool for the next start", left)
        if self.files is not None:
            self.files.close()
        self.drainer.update_gauges()

    # --- the request path ------------------------------------------------------------------------

    async def record(self, records: list[PredictionRecord]) -> None:
        """Spool ``records``; returns once they are durable per the setting (before the response)."""
        await self.record_rows([r.as_row() for r in records])

    async def record_rows(self, rows: list[Row]) -> None:
        """``record`` for records given as their rows (``PredictionRecord.as_row()``), which the
        request path builds directly."""
        lines = list(map(encode, rows))
        spooled, segment = await self._spool(lines)
        if spooled:
            self.buffer.add([row["id"] for row in rows], lines, segment, rows=rows)
            self._added(segment, len(lines))

    async def record_feedback(self, record: FeedbackRecord) -> None:
        """Spool one feedback submission, with the same durability and bound as predictions."""
        lines = [encode(record)]
        spooled, segment = await self._spool(lines)
        if spooled:
            self.buffer.add([record.id], lines, segment, FEEDBACK, [record.prediction_id])
            self._added(segment, 1)

    async def _spool(self, lines: list[bytes]) -> tuple[bool, Segment | None]:
        assert self._started, "PredictionLog.start() was not called"
        size = sum(len(line) for line in lines)
        if self.buffer.bytes + self._reserved + size > self.settings.max_bytes:
            self._reject(len(lines), "the prediction log is full; retry shortly")
            return False, None
        self._reserved += size
        try:
            return True, await self.writer.append(b"".join(lines))
        except SpoolWriteError:
            self._reject(len(lines), "the prediction log cannot be written; retry shortly")
            return False, None
        finally:
            self._reserved -= size

    def _added(self, segment: Segment | None, records: int) -> None:
        if self.files is not None:
            self.files.hold(segment, records)
        self.drainer.update_gauges()
        self.drainer.notify()

    def _reject(self, count: int, message: str) -> None:
        if self.settings.fail_open:
            self._metrics.spool_dropped.inc(count)
            log.error("prediction log: %d records dropped (fail-open): %s", count, message)
            return
        raise PredictionLogFull(message)

    # --- reads -----------------------------------------------------------------------------------

    def pending(self, prediction_id: uuid.UUID) -> Row | None:
        rec = self.buffer.get(prediction_id)
        return decode(rec.line) if rec is not None else None

    def oldest_pending_age(self) -> float:
        """Seconds the oldest record still waiting for the database has been spooled (0 if none)."""
        return self.buffer.oldest_age()

    async def get(self, prediction_id: uuid.UUID) -> Row | None:
        """A logged prediction: this worker's buffer, the database, the host's other spools; and for
        an id made a moment ago (elsewhere), the database again until another replica's drain
        brings it or ``read_wait_s`` after its creation has passed (``app.prediction_log.ids``).

        Raises ``DatabaseUnavailable`` only when the database cannot be asked and no spool has it.
        """
        if (row := await self._look(prediction_id)) is not None:
            return row
        remaining = self._wait_left(prediction_id)
        if remaining <= 0:
            return None
        row = await self._wait_for_drain(prediction_id, remaining)
        self._metrics.spool_read_waits.labels("found" if row is not None else "not_found").inc()
        return row

    async def _look(self, prediction_id: uuid.UUID) -> Row | None:
        if (row := self.pending(prediction_id)) is not None:
            return row
        try:
            if (row := await self._select(prediction_id)) is not None:
                return row
            database_up = True
        except DatabaseUnavailable:
            database_up = False
        peers = await self.peers([prediction_id])
        if (row := peers.predictions.get(prediction_id)) is not None:
            self._metrics.spool_peer_reads.inc()
            return row
        if not database_up:
            raise DatabaseUnavailable(_UNAVAILABLE)
        # Its owner may have committed it and retired the segment between our two looks.
        return await self._select(prediction_id)

    def _wait_left(self, prediction_id: uuid.UUID) -> float:
        """Seconds still worth waiting for ``prediction_id`` to be drained by whoever made it:
        up to ``read_wait_s`` after its creation; none for an old id, a future one beyond the
        clock skew, or an id without a time (not one of ours: it can only be unknown)."""
        made = created_at(prediction_id)
        if made is None:
            return 0.0
        age = time.time() - made
        if age < -self.settings.clock_skew_s:
            return 0.0
        return self.settings.read_wait_s - max(age, 0.0)

    async def _wait_for_drain(self, prediction_id: uuid.UUID, within_s: float) -> Row | None:
        # Polls the indexed primary key, quickly at first: a healthy drain lands within
        # drain_interval_s (0.2 s by default), a slow one is waited for ever more patiently.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        pause = 0.02
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, 0.25)
            if (row := self.pending(prediction_id)) is not None:
                return row
            if (row := await self._select(prediction_id)) is not None:
                return row
        return None

    async def exists(self, prediction_id: uuid.UUID) -> bool:
        return await self.get(prediction_id) is not None

    async def _select(self, prediction_id: uuid.UUID) -> Row | None:
        stmt = select(Prediction.__table__).where(Prediction.id == prediction_id)
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def peers(self, ids: list[uuid.UUID]) -> PeerRecords:
        """Records about ``ids`` in the other workers' segments on this host (a thread scans)."""
        return await self._peers.records(ids)

    def spooled_feedback(self, prediction_id: uuid.UUID) -> dict[uuid.UUID, Row]:
        """This worker's feedback about ``prediction_id`` not yet in the database, by id."""
        rows = (decode(rec.line) for rec in self.buffer.feedback_for(prediction_id))
        return {row["id"]: row for row in rows}

    @property
    def pending_count(self) -> int:
        return len(self.buffer)
