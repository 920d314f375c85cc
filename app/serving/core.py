"""The prediction core shared by every protocol (/v1, /invocations, /v2).

It owns what every protocol needs alike, so no router repeats it: one deadline over decoding and
predicting, admission, the subject HMAC, logging and counting. A protocol hands in only how to
turn its request into validated rows (``decode``) and which model it addresses (``select``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from app.errors import DeadlineExceeded, InvalidInput, Overloaded, PredictionNotFound
from app.metrics import ServiceMetrics
from app.ml.features import BY_NAME, CATEGORICAL, LEVELS
from app.prediction_log.ids import new_ids
from app.prediction_log.log import PredictionLog
from app.prediction_log.privacy import hash_subject
from app.serving.admission import Admission
from app.serving.batching import MicroBatcher
from app.serving.loaded_model import LoadedModel, score_of
from app.serving.model_slot import ModelSlot
from app.serving.shadow import ShadowScorer

Row = dict[str, Any]
# Sets, not the schema's tuples: every request looks each categorical value up.
_VOCABULARIES = {name: frozenset(BY_NAME[name].vocabulary) for name in CATEGORICAL}


class Decoded(Protocol):
    """What a protocol's decoder yields: at least the validated rows."""

    @property
    def rows(self) -> list[Row]: ...


D = TypeVar("D", bound=Decoded)


class PredictionResult(NamedTuple):
    """One row's answer. A named tuple: a 100-row request makes a hundred, and a frozen
    dataclass costs several times as much to build."""

    prediction_id: uuid.UUID
    level: str
    score: float
    probabilities: dict[str, float]
    needs_review: bool = False  # confidence below the review threshold (app/oversight)


@dataclass(frozen=True)
class PredictionOutcome:
    model: LoadedModel
    results: list[PredictionResult]
    canary: bool = False  # answered by the challenger as canary traffic, not by Production


@dataclass(frozen=True)
class _Rows:
    rows: list[Row]


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
        subject_key: bytes,
        batcher: MicroBatcher | None = None,
        review_threshold: float = 0.0,
        shadow: ShadowScorer | None = None,
        canary_percent: float = 0.0,
    ) -> None:
        self.slot = slot
        self.log = prediction_log
        self.metrics = metrics
        self.max_items = max_items
        self.admission = admission
        self.deadline_s = deadline_s
        self._subject_key = subject_key
        # None: each request predicts alone in a worker thread.
        self.batcher = batcher
        # A predicted level whose probability is below this is flagged for review; 0 flags none.
        self.review_threshold = review_threshold
        # The challenger scores what Production answered, in the shadow (None: never).
        self.shadow = shadow
        # Share of default-addressed predictions the challenger answers (sticky per subject).
        self.canary_percent = canary_percent

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    async def predict(
        self,
        rows: list[Row],
        *,
        request_id: str | None = None,
        protocol: str = "v1",
        subject_id: str | None = None,
    ) -> PredictionOutcome:
        """Predict rows already validated (the HR API's body) with the serving model."""
        self._check_size(rows)  # before the model: too many items is the client's error, loaded or not

        async def given(_: LoadedModel) -> _Rows:
            return _Rows(rows)

        _, outcome = await self.serve(
            given, request_id=request_id, protocol=protocol, subject_id=subject_id
        )
        return outcome

    async def serve(
        self,
        decode: Callable[[LoadedModel], Awaitable[D]],
        *,
        protocol: str,
        request_id: str | None = None,
        subject_id: str | None = None,
        select: Callable[[ModelSlot], LoadedModel] | None = None,
    ) -> tuple[D, PredictionOutcome]:
        """Select the model, decode the request for it and predict, all within the deadline.

        ``decode`` runs blocking parsing in a thread itself; it may read the request body, so a
        slow upload counts against the deadline as it always has.
        """
        subject_hash = hash_subject(self._subject_key, subject_id)
        # One reference for the whole request, even if another version is installed meanwhile.
        canary = False
        if select is not None:  # the protocol addresses a model itself (/v2): no canary
            model = select(self.slot)
        else:
            model, canary = self._route(subject_hash)
        if (suspension := self.slot.suspension) is not None:  # the stop switch: nothing predicted
            self.metrics.rejected.labels("suspended", protocol).inc()
            raise suspension.error(model.name)
        try:
            async with asyncio.timeout(self.deadline_s):
                decoded = await decode(model)
                self._check_size(decoded.rows)
                started = time.perf_counter()
                self._count_unknown_categories(decoded.rows)
                proba = await self._admitted(model, decoded.rows, protocol)
        except TimeoutError:
            self.metrics.rejected.labels("deadline", protocol).inc()
            raise DeadlineExceeded(
                f"the request took longer than {self.deadline_s:g} s"
            ) from None
        # Past the deadline's reach: a prediction made is always logged, never half answered.
        latency_ms = (time.perf_counter() - started) * 1000.0
        outcome = await self._log(
            model, decoded.rows, proba, latency_ms, request_id, protocol, subject_hash, canary
        )
        return decoded, outcome

    def _route(self, subject_hash: str | None) -> tuple[LoadedModel, bool]:
        """Production, or the challenger for the canary's share: a subject's pseudonym always
        falls in the same share (sticky); a request without a subject is drawn at random."""
        model = self.slot.require()
        challenger = self.slot.challenger
        if self.canary_percent <= 0 or challenger is None or challenger.version == model.version:
            return model, False
        # 48 bits of the HMAC are uniform in [0, 1) and fixed per subject.
        draw = int(subject_hash[:12], 16) / float(1 << 48) if subject_hash else random.random()
        if draw * 100.0 < self.canary_percent:
            return challenger, True
        return model, False

    def _check_size(self, rows: list[Row]) -> None:
        if len(rows) > self.max_items:
            raise InvalidInput(
                f"too many items: at most {self.max_items} per request",
                [{"field": "items", "type": "too_long", "message": f"at most {self.max_items} items"}],
            )

    async def _log(
        self, model: LoadedModel, rows: list[Row], proba: npt.NDArray[np.float64], latency_ms: float,
        request_id: str | None, protocol: str, subject_hash: str | None, canary: bool = False,
    ) -> PredictionOutcome:
        scores = score_of(proba)
        now = datetime.now(UTC)
        results: list[PredictionResult] = []
        # The prediction table's rows as PredictionRecord.as_row() gives them, built as dicts:
        # a frozen record per row, then its row, cost a 100-row request ~3 us a row.
        records: list[Row] = []
        name, version = model.name, model.version
        levels = model.levels_of(proba)
        ids = new_ids(len(rows))
        # The predicted level's probability is the row's largest: one comparison for all rows.
        flagged = ((proba.max(axis=1) < self.review_threshold).tolist() if self.review_threshold > 0
                   else [False] * len(rows))
        # Plain Python floats once (tolist), not numpy scalars converted one by one.
        for row, p, score, level, prediction_id, needs_review in zip(
            rows, proba.tolist(), scores.tolist(), levels, ids, flagged, strict=True
        ):
            probabilities = dict(zip(LEVELS, p, strict=True))
            results.append(PredictionResult(prediction_id, level, score, probabilities, needs_review))
            records.append({
                "id": prediction_id, "created_at": now, "model_name": name, "model_version": version,
                "features": row, "level": level, "probabilities": probabilities, "score": score,
                "latency_ms": latency_ms, "request_id": request_id, "protocol": protocol,
                "subject_hash": subject_hash, "needs_review": needs_review,
            })
        for level, count in Counter(levels).items():  # one inc per level, not per row
            self.metrics.predictions.labels(model.name, model.version, level, protocol).inc(count)
        self.metrics.prediction_latency.labels(protocol).observe(latency_ms / 1000.0)
        if n_flagged := flagged.count(True):
            self.metrics.predictions_flagged.labels(model.name, model.version).inc(n_flagged)
        await self.log.record_rows(records)
        if canary:
            self.metrics.canary_predictions.labels(model.name, model.version).inc(len(rows))
        elif self.shadow is not None:  # answered and logged: now the challenger may score it
            self.shadow.offer(model, ids, rows)
        return PredictionOutcome(model, results, canary)

    async def _admitted(
        self, model: LoadedModel, rows: list[Row], protocol: str
    ) -> npt.NDArray[np.float64]:
        """Admit the request and predict in a thread (alone, or in a micro-batch).

        A thread cannot be interrupted, so when the deadline gives up waiting the work is
        shielded and keeps its admission slot until its rows are really predicted: the cap
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
        return await asyncio.shield(work)

    async def get(self, prediction_id: uuid.UUID) -> dict[str, Any]:
        row = await self.log.get(prediction_id)
        if row is None:
            raise PredictionNotFound("no prediction with this id")
        return row

    def _count_unknown_categories(self, rows: list[Row]) -> None:
        for name, vocabulary in _VOCABULARIES.items():
            unknown = sum(1 for row in rows if row[name] not in vocabulary)
            if unknown:
                self.metrics.unknown_categories.labels(name).inc(unknown)
