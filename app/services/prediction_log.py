"""The prediction log: every answered prediction becomes a ``prediction`` row.

Requests hand records to an in-memory queue and return; a background task writes them in
multi-row batches. A failed batch is kept and retried with capped backoff, never dropped; on
shutdown the queue is drained. The queue is bounded, so a dead database slows requests down
instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import PredictionLogSettings
from app.db.dialect import insert_ignoring_duplicates
from app.db.tables import Prediction
from app.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionRecord:
    id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    features: dict
    level: str
    probabilities: dict[str, float]
    score: float
    latency_ms: float
    request_id: str | None
    protocol: str
    subject_hash: str | None = None

    def as_row(self) -> dict:
        # Shallow on purpose: asdict() deep-copies every feature dict and UUID, which cost about
        # half of a 100-row request's CPU. Records are frozen and their dicts are never mutated.
        return {f.name: getattr(self, f.name) for f in _FIELDS}


_FIELDS = fields(PredictionRecord)


class PredictionLog:
    def __init__(
        self, engine: AsyncEngine, settings: PredictionLogSettings, metrics: ServiceMetrics
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._metrics = metrics
        self._queue: asyncio.Queue[PredictionRecord] | None = None
        self._pending: dict[uuid.UUID, PredictionRecord] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        # The queue belongs to the running loop, so it is made here and not in __init__.
        self._queue = asyncio.Queue(maxsize=self._settings.queue_max)
        self._task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def record(self, records: list[PredictionRecord]) -> None:
        assert self._queue is not None, "PredictionLog.start() was not called"
        for rec in records:
            self._pending[rec.id] = rec
            await self._queue.put(rec)
        self._metrics.log_pending.set(len(self._pending))

    def pending(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        return self._pending.get(prediction_id)

    async def get(self, prediction_id: uuid.UUID) -> dict | None:
        """A logged prediction, from the queue if it is not written yet."""
        if (rec := self._pending.get(prediction_id)) is not None:
            return rec.as_row()
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(Prediction.__table__).where(Prediction.id == prediction_id))
            ).mappings().first()
        return dict(row) if row else None

    async def stop(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the writer."""
        if self._task is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error("prediction log: %d records not written at shutdown", len(self._pending))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _next_batch(self) -> list[PredictionRecord]:
        queue, batch = self._queue, []
        batch.append(await queue.get())
        deadline = asyncio.get_running_loop().time() + self._settings.flush_interval_s
        while len(batch) < self._settings.batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._stopping:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._write_with_retry(batch)
            for rec in batch:
                self._pending.pop(rec.id, None)
                self._queue.task_done()
            self._metrics.log_written.inc(len(batch))
            self._metrics.log_pending.set(len(self._pending))

    async def _write_with_retry(self, batch: list[PredictionRecord]) -> None:
        delay = 0.1
        while True:
            try:
                async with self._engine.begin() as conn:
                    await insert_ignoring_duplicates(
                        conn, Prediction.__table__, [r.as_row() for r in batch]
                    )
                return
            except Exception as exc:  # the database is down or refused the batch: keep it, retry
                self._metrics.log_failures.inc()
                log.warning("prediction log: batch of %d not written (%s); retrying in %.1fs",
                            len(batch), type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)
