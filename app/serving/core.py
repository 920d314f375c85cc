"""The prediction core shared by every protocol: validate once, predict off the loop, log, count."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import DeadlineExceeded, InvalidInput, Overloaded, PredictionNotFound
from app.metrics import ServiceMetrics
from app.ml.features import BY_NAME, CATEGORICAL, LEVELS
from app.prediction_log.log import PredictionLog, PredictionRecord
from app.serving.admission import Admission
from app.serving.batching import MicroBatcher
from app.serving.loaded_model import LoadedModel, score_of
from app.serving.model_slot import ModelSlot


@dataclass(frozen=True)
class PredictionResult:
    prediction_id: uuid.UUID
    level: str
    score: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PredictionOutcome:
    model: LoadedModel
    results: list[PredictionResult]


class PredictionService:
    def __init__(
        self,
        *,
        slot: ModelSlot,
        prediction_log: PredictionLog,
        metrics: ServiceMetrics,
        admission: Admission,
        max_items: int,
        deadline_s: float,
        batcher: MicroBatcher | None = None,
    ) -> None:
        self.slot = slot
        self.log = prediction_log
        self.metrics = metrics
        self.max_items = max_items
        self.admission = admission
        self.deadline_s = deadline_s
        # None: each request predicts alone in a worker thread.
        self.batcher = batcher

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    async def predict(
        self,
        rows: list[dict],
        *,
        request_id: str | None = None,
        protocol: str = "v1",
        subject_hash: str | None = None,
    ) -> PredictionOutcome:
        """Predict validated rows with the serving model and log every result."""
        if len(rows) > self.max_items:
            raise InvalidInput(
                f"too many items: at most {self.max_items} per request",
                [{"field": "items", "type": "too_long", "message": f"at most {self.max_items} items"}],
            )
        model = self.slot.require()  # one reference for the whole request
        started = time.perf_counter()
        self._count_unknown_categories(rows)
        proba = await self._predict_within_deadline(model, rows, protocol)
        scores = score_of(proba)
        latency_ms = (time.perf_counter() - started) * 1000.0
        now = datetime.now(UTC)

        results, records = [], []
        # Plain Python floats once (tolist), not numpy scalars converted one by one.
        for row, p, score, level in zip(rows, proba.tolist(), scores.tolist(), model.levels_of(proba)):
            probabilities = dict(zip(LEVELS, p))
            result = PredictionResult(uuid.uuid4(), level, score, probabilities)
            results.append(result)
            records.append(
                PredictionRecord(
                    id=result.prediction_id, created_at=now, model_name=model.name,
                    model_version=model.version, features=row, level=level,
                    probabilities=probabilities, score=result.score, latency_ms=latency_ms,
                    request_id=request_id, protocol=protocol, subject_hash=subject_hash,
                )
            )
        for level, count in Counter(r.level for r in results).items():  # one inc per level, not per row
            self.metrics.predictions.labels(model.name, model.version, level, protocol).inc(count)
        self.metrics.prediction_latency.labels(protocol).observe(latency_ms / 1000.0)
        await self.log.record(records)
        return PredictionOutcome(model, results)

    async def _predict_within_deadline(self, model: LoadedModel, rows: list[dict], protocol: str):
        """Admit the request, predict in a thread, give up waiting at the deadline.

        A thread cannot be interrupted, so a timed-out prediction keeps its admission slot until
        its rows are really predicted (alone, or in the micro-batch that took them): the cap
        counts the work actually pending.
        """
        try:
            self.admission.enter()
        except Overloaded:
            self.metrics.rejected.labels("overload", protocol).inc()
            raise
        if self.batcher is not None:
            work = self.batcher.submit(model, rows)
        else:
            work = asyncio.ensure_future(asyncio.to_thread(model.predict_rows, rows))
        work.add_done_callback(lambda _: self.admission.leave())
        try:
            return await asyncio.wait_for(asyncio.shield(work), self.deadline_s)
        except TimeoutError:
            self.metrics.rejected.labels("deadline", protocol).inc()
            raise DeadlineExceeded(
                f"the prediction did not finish within {self.deadline_s:g}s"
            ) from None

    async def get(self, prediction_id: uuid.UUID) -> dict:
        row = await self.log.get(prediction_id)
        if row is None:
            raise PredictionNotFound("no prediction with this id")
        return row

    def _count_unknown_categories(self, rows: list[dict]) -> None:
        for name in CATEGORICAL:
            vocabulary = BY_NAME[name].vocabulary
            unknown = sum(1 for row in rows if row[name] not in vocabulary)
            if unknown:
                self.metrics.unknown_categories.labels(name).inc(unknown)
