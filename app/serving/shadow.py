"""Shadow scoring: the challenger scores the rows Production answered, off the request path.

``offer`` is called after a prediction is logged and costs the request one append: the rows go
into a bounded queue (``FS_CHALLENGER_SHADOW_QUEUE_ROWS``); when it is full they are dropped and
counted (``fs_shadow_rows_total{outcome="queue_full"}``), never waited for. One task takes queued
rows in batches, scores them with the challenger in a worker thread and writes one
``shadow_prediction`` row per prediction (never returned to a caller). A failed call or write
drops its batch and counts it: the prediction itself is already safe in the prediction log.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import ChallengerSettings
from app.db.dialect import insert_ignoring_duplicates
from app.db.tables import ShadowPrediction
from app.metrics import ServiceMetrics
from app.ml.features import LEVELS
from app.serving.loaded_model import LoadedModel, score_of
from app.serving.model_slot import ModelSlot

log = logging.getLogger(__name__)

Row = dict[str, Any]
_TABLE: Table = ShadowPrediction.__table__  # type: ignore[assignment]  # a Table, typed FromClause
# Wait this long for company before a call (unless a full batch is queued): a steady stream of
# single-row requests becomes a few calls and inserts a second instead of one per request, which
# would compete with the requests themselves for the event loop and the GIL.
GATHER_S = 0.05


@dataclass(frozen=True)
class _Job:
    challenger: LoadedModel
    champion_version: str
    ids: list[uuid.UUID]
    rows: list[Row]


class ShadowScorer:
    def __init__(self, *, slot: ModelSlot, engine: AsyncEngine, metrics: ServiceMetrics,
                 settings: ChallengerSettings) -> None:
        self.slot = slot
        self._engine = engine
        self.metrics = metrics
        self.settings = settings
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued = 0
        self._busy = False
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued

    async def start(self) -> None:
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run(), name="shadow-scorer")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the queued work (bounded), then stop; what is left is dropped and counted."""
        if self._task is None:
            return
        try:
            await self.wait_idle(timeout_s)
        except TimeoutError:
            pass
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._queued:
            self.metrics.shadow_rows.labels("shutdown").inc(self._queued)
            log.warning("shadow scoring: %d rows not scored at shutdown", self._queued)
        self._jobs.clear()
        self._set_queued(0)

    async def wait_idle(self, timeout_s: float) -> None:
        """Return once everything offered so far is scored and written (benchmarks, shutdown)."""
        if self._idle is not None:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()

    def offer(self, champion: LoadedModel, ids: list[uuid.UUID], rows: list[Row]) -> None:
        """Queue the rows ``champion`` answered for the challenger, if there is one (never waits)."""
        challenger = self.slot.challenger
        if (challenger is None or not self.settings.shadow or self._wake is None
                or challenger.version == champion.version or challenger.name != champion.name):
            return
        if self._queued + len(rows) > self.settings.shadow_queue_rows:
            self.metrics.shadow_rows.labels("queue_full").inc(len(rows))
            return
        self._jobs.append(_Job(challenger, champion.version, ids, rows))
        self._set_queued(self._queued + len(rows))
        assert self._idle is not None
        self._idle.clear()
        self._wake.set()

    def _set_queued(self, rows: int) -> None:
        self._queued = rows
        self.metrics.shadow_queue_rows.set(rows)

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                if self._queued < self.settings.shadow_batch_rows:
                    await asyncio.sleep(GATHER_S)
                batch = self._take()
                try:
                    await self._score(batch)
                except Exception:  # never let one batch end shadow scoring
                    log.exception("shadow scoring: a batch failed")
                    self.metrics.shadow_rows.labels("failed").inc(sum(len(j.rows) for j in batch))
            if not self._jobs:
                self._idle.set()

    def _take(self) -> list[_Job]:
        """Jobs of one challenger, up to the batch size (at least one job)."""
        first = self._jobs.popleft()
        batch, rows = [first], len(first.rows)
        while (self._jobs and self._jobs[0].challenger is first.challenger
               and rows + len(self._jobs[0].rows) <= self.settings.shadow_batch_rows):
            job = self._jobs.popleft()
            batch.append(job)
            rows += len(job.rows)
        self._set_queued(self._queued - rows)
        return batch

    async def _score(self, batch: list[_Job]) -> None:
        challenger = batch[0].challenger
        rows = [row for job in batch for row in job.rows]
        started = time.perf_counter()
        try:
            proba = await asyncio.to_thread(challenger.predict_rows, rows)
        except Exception:
            log.exception("shadow scoring: challenger %s could not score %d rows",
                          challenger.version, len(rows))
            self.metrics.shadow_rows.labels("failed").inc(len(rows))
            return
        elapsed = time.perf_counter() - started
        self.metrics.shadow_latency.observe(elapsed)
        now = datetime.now(UTC)
        levels = challenger.levels_of(proba)
        ids = [(job.champion_version, prediction_id) for job in batch for prediction_id in job.ids]
        records = [
            {"prediction_id": prediction_id, "created_at": now, "model_name": challenger.name,
             "model_version": challenger.version, "champion_version": champion,
             "level": level, "probabilities": dict(zip(LEVELS, p, strict=True)), "score": score,
             "latency_ms": elapsed * 1000.0}
            for (champion, prediction_id), level, p, score in zip(
                ids, levels, proba.tolist(), score_of(proba).tolist(), strict=True)
        ]
        try:
            async with self._engine.begin() as conn:
                await insert_ignoring_duplicates(conn, _TABLE, records)
        except Exception as exc:  # the database is down or refused: shadow rows are expendable
            log.warning("shadow scoring: %d rows not stored (%s)", len(records), type(exc).__name__)
            self.metrics.shadow_rows.labels("database").inc(len(records))
            return
        self.metrics.shadow_rows.labels("stored").inc(len(records))
