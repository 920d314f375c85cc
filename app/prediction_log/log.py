"""The prediction log: every answered prediction becomes exactly one ``prediction`` row.

``record`` appends the request's records to the local spool and returns once they are as durable
as ``FS_SPOOL_DURABILITY`` promises; only then is the response sent. A drainer task moves spooled
records into the database (``app.prediction_log.drainer``); segments left by dead workers or a crashed
process are adopted and drained at start-up and every ``orphan_scan_interval_s``. The spool is
bounded: when full, ``record`` raises ``PredictionLogFull`` (503 + Retry-After) unless fail-open.
Feedback is spooled the same way (``record_feedback``). Reads look in this worker's buffer, the
database, then the other workers' live segments on this host (``app.prediction_log.peers``).
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from app.prediction_log.ingest import LogSink
from app.prediction_log.peers import PeerRecords, scan
from app.prediction_log.pending import PendingBuffer
from app.prediction_log.records import (
    FEEDBACK,
    PREDICTION,
    FeedbackRecord,
    PredictionRecord,
    decode,
    decode_entry,
    encode,
    record_id,
)
from app.prediction_log.segments import Segment, SpoolFiles, adopt, orphan_paths
from app.prediction_log.writer import SpoolWriteError, SpoolWriter

__all__ = ["PredictionLog", "PredictionRecord"]

log = logging.getLogger(__name__)

# A fully drained active segment at least this big is rotated out (and deleted) at the next append.
ROTATE_DRAINED_BYTES = 1 << 20
_UNAVAILABLE = "the prediction database is unavailable; retry shortly"


def default_worker_id() -> str:
    return f"p{os.getpid()}"


class PredictionLog:
    def __init__(
        self,
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
        durable = settings.durability != "none"
        self.files = (
            SpoolFiles(directory, self.worker, settings.durability == "fsync", settings.segment_max_bytes)
            if durable else None
        )
        self.buffer = PendingBuffer()
        self.writer = SpoolWriter(self.files, settings.durability, settings.group_commit_wait_ms)
        self.writer.on_closed = self._segment_closed
        self.sink = LogSink(engine, settings.ingest_method)
        self.dead_letters = DeadLetterStore(directory)
        self.drainer = Drainer(
            self.buffer, self.sink, settings, metrics, self._retire, self.dead_letters,
            self._peer_has, self._scan_orphans if durable else None, self._drained,
        )
        self._reserved = 0  # bytes being written to the spool, not yet in the buffer
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.files is not None:
            await asyncio.to_thread(self.files.open)
        # Segments of dead workers (or of this worker's previous life) are drained first.
        await self._scan_orphans()
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
        for segment in self.buffer.segments():
            segment.release()
        if self.files is not None and self.files.active is not None:
            active = self.files.active
            if active.outstanding == 0:
                active.retire()
            else:
                active.release()
        self.drainer.update_gauges()

    # --- the request path ------------------------------------------------------------------------

    async def record(self, records: list[PredictionRecord]) -> None:
        """Spool ``records``; returns once they are durable per the setting (before the response)."""
        lines = [encode(r) for r in records]
        spooled, segment = await self._spool(lines)
        if spooled:
            self.buffer.add([r.id for r in records], lines, segment)
            self._added()

    async def record_feedback(self, record: FeedbackRecord) -> None:
        """Spool one feedback submission, with the same durability and bound as predictions."""
        lines = [encode(record)]
        spooled, segment = await self._spool(lines)
        if spooled:
            self.buffer.add([record.id], lines, segment, FEEDBACK, [record.prediction_id])
            self._added()

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

    def _added(self) -> None:
        self.drainer.update_gauges()
        self.drainer.notify()

    def _reject(self, count: int, message: str) -> None:
        if self.settings.fail_open:
            self._metrics.spool_dropped.inc(count)
            log.error("prediction log: %d records dropped (fail-open): %s", count, message)
            return
        raise PredictionLogFull(message)

    # --- reads -----------------------------------------------------------------------------------

    def pending(self, prediction_id: uuid.UUID) -> dict | None:
        rec = self.buffer.get(prediction_id)
        return decode(rec.line) if rec is not None else None

    def oldest_pending_age(self) -> float:
        """Seconds the oldest record still waiting for the database has been spooled (0 if none)."""
        return self.buffer.oldest_age()

    async def get(self, prediction_id: uuid.UUID) -> dict | None:
        """A logged prediction: this worker's buffer, the database, then the host's other spools.

        Raises ``DatabaseUnavailable`` only when the database cannot be asked and no spool has it.
        """
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

    async def exists(self, prediction_id: uuid.UUID) -> bool:
        return await self.get(prediction_id) is not None

    async def _select(self, prediction_id: uuid.UUID) -> dict | None:
        stmt = select(Prediction.__table__).where(Prediction.id == prediction_id)
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def peers(self, ids: list[uuid.UUID]) -> PeerRecords:
        """Records about ``ids`` in the other workers' segments on this host (a thread scans)."""
        own = frozenset(self.files.own) if self.files is not None else frozenset()
        return await asyncio.to_thread(scan, self.directory, own, ids)

    def spooled_feedback(self, prediction_id: uuid.UUID) -> dict[uuid.UUID, dict]:
        """This worker's feedback about ``prediction_id`` not yet in the database, by id."""
        rows = (decode(rec.line) for rec in self.buffer.feedback_for(prediction_id))
        return {row["id"]: row for row in rows}

    async def _peer_has(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        own = {i for i in ids if self.buffer.get(i) is not None}
        return own | set((await self.peers(list(ids - own))).predictions)

    @property
    def pending_count(self) -> int:
        return len(self.buffer)

    # --- internals -------------------------------------------------------------------------------

    def _drained(self) -> None:
        active = self.files.active if self.files is not None else None
        if active is not None and active.outstanding == 0 and active.size >= ROTATE_DRAINED_BYTES:
            self.files.rotate_next = True

    def _segment_closed(self, segment: Segment) -> None:
        segment.closed = True
        if segment.outstanding == 0:
            self._retire(segment)

    def _retire(self, segment: Segment) -> None:
        segment.retire()
        if self.files is not None:
            self.files.forget(segment)

    async def _scan_orphans(self) -> None:
        if self.files is None:
            return
        own = set(self.files.own)
        paths = await asyncio.to_thread(orphan_paths, self.directory, own)
        for path in paths:
            adopted = await asyncio.to_thread(adopt, path, self.directory / "quarantine", record_id)
            if adopted is None:
                continue  # its owner is alive
            segment = adopted.segment
            self.files.own.add(segment.path)
            if not adopted.lines:
                self._retire(segment)
                continue
            entries = [(line, *decode_entry(line)) for line in adopted.lines]
            for kind in (PREDICTION, FEEDBACK):
                rows = [(line, row) for line, k, row in entries if k == kind]
                self.buffer.add([row["id"] for _, row in rows], [line for line, _ in rows], segment,
                                kind, [row.get("prediction_id") for _, row in rows])
            log.info("prediction log: adopted %d records from %s", len(adopted.lines), path.name)
        self.drainer.notify()
