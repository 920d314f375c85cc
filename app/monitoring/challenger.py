"""The challenger against Production on the same live rows: what shadow scoring stored.

Every figure is computed over the predictions Production answered and the challenger scored in
the shadow (``shadow_prediction`` joined to ``prediction``): agreement and the champion x
challenger confusion of levels on all of them; on those with feedback (latest feedback wins) each
model's accuracy and macro-F1; the label-free estimates of both (calibrated confidence,
``app.monitoring.estimation``); and latency. The same counts give the promotion policy its live
evidence (``evidence``).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, desc, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.queries import latest_per_prediction
from app.db.session import read_only
from app.db.tables import Prediction, PredictionFeedback, ShadowPrediction
from app.ml.features import LEVELS
from app.monitoring.estimation import EstimationService
from app.monitoring.performance import Confusion, scores
from app.monitoring.windows import TimeWindow

_UNAVAILABLE = "shadow predictions cannot be read right now"
# Latency percentiles come from the newest rows of the window, not all of them.
LATENCY_SAMPLE = 20_000
_POSITION = {level: i for i, level in enumerate(LEVELS)}


@dataclass
class Comparison:
    model_name: str
    challenger_version: str
    window: dict[str, str]
    champion_versions: list[str]
    rows_shadow_scored: int
    rows_compared: int  # of those, rows whose prediction is in the database already
    agreement_rate: float | None
    # confusion[champion level][challenger level]: row counts
    confusion: dict[str, dict[str, int]]
    rows_with_feedback: int
    champion: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)
    canary_predictions: int = 0
    uncalibrated_versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scored:
    """Accuracy and macro-F1 of one model on the rows with feedback."""

    accuracy: float
    f1_macro: float


@dataclass(frozen=True)
class LiveEvidence:
    """Champion and candidate on the same shadow-scored rows that have feedback: what the
    promotion policy's live checks read (``app.lifecycle.policy.LiveEvidence``)."""

    rows_with_feedback: int
    champion: Scored | None
    candidate: Scored | None


def _matrix() -> Confusion:
    return np.zeros((len(LEVELS), len(LEVELS)), dtype=np.int64)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None}
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3)}


def _scored(confusion: Confusion) -> Scored | None:
    if not confusion.sum():
        return None
    accuracy, f1, _ = scores(confusion)
    return Scored(round(accuracy, 6), round(f1, 6))


class ChallengerComparison:
    def __init__(self, *, engine: AsyncEngine, estimation: EstimationService) -> None:
        self._engine = engine
        self._estimation = estimation

    def _shadowed(self, model_name: str, version: str, window: TimeWindow | None,
                  champion: str | None = None) -> list[ColumnElement[bool]]:
        s = ShadowPrediction.__table__
        where = [s.c.model_name == model_name, s.c.model_version == version]
        if window is not None:
            where += [s.c.created_at >= window.start, s.c.created_at < window.end]
        if champion is not None:
            where.append(s.c.champion_version == champion)
        return where

    async def _feedback_counts(self, where: list[ColumnElement[bool]]
                               ) -> tuple[Confusion, Confusion]:
        """Confusions (actual x predicted) of the champion and of the challenger on the rows
        with feedback."""
        s, p = ShadowPrediction.__table__, Prediction.__table__
        ranked = latest_per_prediction(PredictionFeedback.__table__, "actual_level")
        stmt = (
            select(p.c.level, s.c.level, ranked.c.actual_level, func.count())
            .select_from(s.join(p, p.c.id == s.c.prediction_id)
                         .join(ranked, ranked.c.prediction_id == s.c.prediction_id))
            .where(ranked.c.rn == 1, *where)
            .group_by(p.c.level, s.c.level, ranked.c.actual_level)
        )
        champion, challenger = _matrix(), _matrix()
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            for mine, theirs, actual, n in (await conn.execute(stmt)).all():
                if mine in _POSITION and theirs in _POSITION and actual in _POSITION:
                    champion[_POSITION[actual], _POSITION[mine]] += int(n)
                    challenger[_POSITION[actual], _POSITION[theirs]] += int(n)
        return champion, challenger

    async def evidence(self, model_name: str, candidate: str, champion: str) -> LiveEvidence:
        """The promotion policy's live evidence: ``candidate`` shadowing ``champion``."""
        mine, theirs = await self._feedback_counts(
            self._shadowed(model_name, candidate, None, champion))
        return LiveEvidence(int(mine.sum()), _scored(mine), _scored(theirs))

    async def compare(self, model_name: str, version: str, window: TimeWindow) -> Comparison:
        s, p = ShadowPrediction.__table__, Prediction.__table__
        where = self._shadowed(model_name, version, window)
        joined = s.join(p, p.c.id == s.c.prediction_id)
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            shadowed = await conn.scalar(select(func.count()).select_from(s).where(*where)) or 0
            champions = sorted((await conn.execute(
                select(s.c.champion_version).where(*where).distinct())).scalars())
            pairs = (await conn.execute(
                select(p.c.level, s.c.level, func.count()).select_from(joined).where(*where)
                .group_by(p.c.level, s.c.level))).all()
            latencies = (await conn.execute(
                select(p.c.latency_ms, s.c.latency_ms).select_from(joined).where(*where)
                .order_by(desc(s.c.created_at)).limit(LATENCY_SAMPLE))).all()
            canary = await conn.scalar(
                select(func.count()).select_from(p)
                .where(p.c.model_name == model_name, p.c.model_version == version,
                       p.c.created_at >= window.start, p.c.created_at < window.end)) or 0
        confusion = {a: {b: 0 for b in LEVELS} for a in LEVELS}
        for mine, theirs, n in pairs:
            if mine in confusion and theirs in confusion[mine]:
                confusion[mine][theirs] += int(n)
        compared = sum(sum(row.values()) for row in confusion.values())
        agreed = sum(confusion[level][level] for level in LEVELS)
        mine, theirs = await self._feedback_counts(where)
        champion_estimate, champion_uncalibrated = await self._estimation.estimate_of(
            self._cells_query(p.c.model_version, p.c.level, p.c.probabilities, joined, where),
            model_name)
        challenger_estimate, challenger_uncalibrated = await self._estimation.estimate_of(
            self._cells_query(s.c.model_version, s.c.level, s.c.probabilities, s, where),
            model_name)
        champion_latency, challenger_latency = await asyncio.to_thread(
            lambda: (_percentiles([r[0] for r in latencies]), _percentiles([r[1] for r in latencies])))

        def side(scored: Scored | None, estimate: Any, latency: dict[str, float | None]
                 ) -> dict[str, Any]:
            return {"feedback": asdict(scored) if scored else None,
                    "estimated": estimate.to_dict() if estimate else None, "latency": latency}

        return Comparison(
            model_name=model_name, challenger_version=version,
            window={"start": window.start.isoformat(), "end": window.end.isoformat()},
            champion_versions=champions, rows_shadow_scored=int(shadowed), rows_compared=compared,
            agreement_rate=round(agreed / compared, 6) if compared else None,
            confusion=confusion, rows_with_feedback=int(mine.sum()),
            champion=side(_scored(mine), champion_estimate, champion_latency),
            challenger=side(_scored(theirs), challenger_estimate, challenger_latency),
            canary_predictions=int(canary),
            uncalibrated_versions=sorted({*champion_uncalibrated, *challenger_uncalibrated}),
        )

    def _cells_query(self, version: Any, level: Any, probabilities: Any, source: Any,
                     where: list[ColumnElement[bool]]) -> Select[Any]:
        grid = self._estimation.grid(probabilities)
        key = literal(0).label("k")
        return (select(key, version, level, *grid, func.count()).select_from(source).where(*where)
                .group_by(version, level, *grid))
