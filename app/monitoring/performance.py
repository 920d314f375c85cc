"""Model performance from feedback: accuracy, macro-F1 and per-class recall per time bucket, and the trend.

Feedback is joined to the predictions it judges; when a prediction got several feedback rows the
latest wins. Buckets follow the time the prediction was made. The database returns one count per
(bucket, predicted level, actual level), never the rows. The final decisions (the latest review's
level where a person reviewed the prediction, else the model's) are scored the same way, overall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import bucket_index
from app.db.queries import latest_per_prediction
from app.db.session import read_only
from app.db.tables import Prediction, PredictionFeedback, PredictionReview
from app.errors import InvalidInput
from app.metrics import ServiceMetrics
from app.ml.features import LEVELS
from app.monitoring.estimation import Estimate, EstimationService
from app.monitoring.windows import TimeWindow

MAX_BUCKETS = 1000


@dataclass
class BucketScore:
    start: str
    end: str
    feedback: int
    accuracy: float | None = None
    f1_macro: float | None = None
    recall: dict[str, float | None] = field(default_factory=dict)
    # The label-free estimate over all the bucket's predictions (estimation.py); None when no
    # version in it has calibration maps.
    estimated: dict[str, Any] | None = None


@dataclass
class Overall:
    feedback: int
    accuracy: float
    f1_macro: float
    recall: dict[str, float | None]


@dataclass
class FinalDecisions:
    """The same scores for the final decisions, and how many of the judged predictions people
    reviewed and overrode (their final level differs from the model's)."""

    feedback: int
    accuracy: float
    f1_macro: float
    recall: dict[str, float | None]
    reviewed: int
    overridden: int


@dataclass
class Trend:
    direction: str  # improving, declining, stable or insufficient_data
    change: float | None
    buckets_with_feedback: int
    first_accuracy: float | None = None
    last_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        if self.change is None:  # no line through fewer than two points: no end points either
            del body["first_accuracy"], body["last_accuracy"]
        return body


@dataclass
class PerformanceReport:
    model_name: str
    model_version: str | None
    window: TimeWindow
    bucket_seconds: float
    overall: Overall | None
    trend: Trend
    buckets: list[BucketScore]
    final_decisions: FinalDecisions | None = None
    estimated: Estimate | None = None
    uncalibrated_versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/performance``."""
        return {
            "model_name": self.model_name, "model_version": self.model_version,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "bucket_seconds": self.bucket_seconds,
            "overall": asdict(self.overall) if self.overall else None,
            "trend": self.trend.to_dict(),
            "buckets": [asdict(b) for b in self.buckets],
            "final_decisions": asdict(self.final_decisions) if self.final_decisions else None,
            "estimated": self.estimated.to_dict() if self.estimated else None,
            "uncalibrated_versions": self.uncalibrated_versions,
        }


Confusion = np.ndarray[Any, np.dtype[np.int64]]


def scores(confusion: Confusion) -> tuple[float, float, dict[str, float | None]]:
    """Accuracy, macro-F1 over the classes present (as actual or predicted), recall per class.

    ``confusion[i, j]`` counts rows whose actual level is LEVELS[i] and predicted level LEVELS[j].
    """
    total = confusion.sum()
    accuracy = float(np.trace(confusion) / total)
    f1s, recall = [], {}
    for i, level in enumerate(LEVELS):
        actual, predicted, hit = confusion[i].sum(), confusion[:, i].sum(), confusion[i, i]
        recall[level] = float(hit / actual) if actual else None
        if actual or predicted:
            f1s.append(2 * hit / (actual + predicted))
    return accuracy, float(np.mean(f1s)), recall


def trend(buckets: list[BucketScore], tolerance: float) -> Trend:
    """Least-squares line through bucket accuracies (weighted by feedback count): its change
    from the first to the last bucket with feedback."""
    points = [(i, b.accuracy, b.feedback) for i, b in enumerate(buckets) if b.feedback]
    if len(points) < 2:
        return Trend("insufficient_data", None, len(points))
    x, y, w = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
    change = float(slope * (x[-1] - x[0]))
    direction = "improving" if change > tolerance else "declining" if change < -tolerance else "stable"
    return Trend(direction, round(change, 6), len(points), float(y[0]), float(y[-1]))


class PerformanceService:
    def __init__(self, *, engine: AsyncEngine, metrics: ServiceMetrics, trend_tolerance: float,
                 estimation: EstimationService | None = None) -> None:
        self._engine = engine
        self._metrics = metrics
        self.trend_tolerance = trend_tolerance
        self._estimation = estimation

    async def compute(self, window: TimeWindow, bucket: timedelta, model_name: str,
                      model_version: str | None = None) -> PerformanceReport:
        seconds = bucket.total_seconds()
        n_buckets = int(np.ceil((window.end - window.start).total_seconds() / seconds))
        if n_buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"the window holds {n_buckets} buckets; at most {MAX_BUCKETS} are allowed",
                [{"field": "bucket", "type": "too_small", "message": "use a larger bucket"}],
            )
        counts = await self._confusions(window, seconds, model_name, model_version)
        buckets = []
        for i in range(n_buckets):
            start = window.start + timedelta(seconds=i * seconds)
            end = min(window.start + timedelta(seconds=(i + 1) * seconds), window.end)
            confusion = counts.get(i)
            score = BucketScore(start.isoformat(), end.isoformat(), 0)
            if confusion is not None and confusion.sum():
                score.feedback = int(confusion.sum())
                score.accuracy, score.f1_macro, score.recall = scores(confusion)
            buckets.append(score)
        total: Confusion = np.zeros((3, 3), dtype=np.int64)
        for confusion in counts.values():
            total += confusion
        overall = None
        if total.sum():
            overall = Overall(int(total.sum()), *scores(total))
        latest = next((b for b in reversed(buckets) if b.accuracy is not None), None)
        if latest is not None and latest.accuracy is not None:
            self._metrics.model_accuracy.set(latest.accuracy)
        final = await self._final_decisions(window, model_name, model_version)
        report = PerformanceReport(model_name, model_version, window, seconds, overall,
                                   trend(buckets, self.trend_tolerance), buckets, final)
        if self._estimation is not None:
            await self._add_estimates(report, model_name, model_version)
        return report

    async def _add_estimates(self, report: PerformanceReport, model_name: str,
                             model_version: str | None) -> None:
        """The label-free estimate per bucket and overall, beside the realized figures."""
        assert self._estimation is not None
        per_bucket, overall, uncalibrated = await self._estimation.by_bucket(
            report.window, report.bucket_seconds, model_name, model_version)
        for index, found in per_bucket.items():
            if 0 <= index < len(report.buckets):
                body = found.to_dict()
                del body["expected_confusion"]  # per bucket the summary; overall the matrix
                report.buckets[index].estimated = body
        report.estimated, report.uncalibrated_versions = overall, uncalibrated
        latest = max(per_bucket, default=None)
        if latest is not None:
            self._metrics.model_estimated_accuracy.set(per_bucket[latest].accuracy)
            self._metrics.model_estimated_f1_macro.set(per_bucket[latest].f1_macro)

    async def _confusions(self, window: TimeWindow, seconds: float, model_name: str,
                          model_version: str | None) -> dict[int, Confusion]:
        p, f = Prediction.__table__, PredictionFeedback.__table__
        ranked = latest_per_prediction(f, "actual_level")
        index = bucket_index(p.c.created_at, window.start.timestamp(), seconds,
                             self._engine.dialect.name).label("bucket")
        stmt = (
            select(index, p.c.level, ranked.c.actual_level, func.count().label("n"))
            .join(ranked, ranked.c.prediction_id == p.c.id)
            .where(ranked.c.rn == 1, p.c.model_name == model_name,
                   p.c.created_at >= window.start, p.c.created_at < window.end)
            .group_by(index, p.c.level, ranked.c.actual_level)
        )
        if model_version is not None:
            stmt = stmt.where(p.c.model_version == model_version)
        position = {level: i for i, level in enumerate(LEVELS)}
        out: dict[int, Confusion] = {}
        async with read_only(self._engine, "feedback cannot be read right now") as conn:
            for bucket, predicted, actual, n in (await conn.execute(stmt)).all():
                if predicted not in position or actual not in position:
                    continue  # not a level this model predicts; the feedback endpoint validates
                matrix = out.setdefault(int(bucket), np.zeros((3, 3), dtype=np.int64))
                matrix[position[actual], position[predicted]] += int(n)
        return out

    async def _final_decisions(self, window: TimeWindow, model_name: str,
                               model_version: str | None) -> FinalDecisions | None:
        """Counts per (model level, latest review's level or null, actual level) over the window."""
        p, f, r = Prediction.__table__, PredictionFeedback.__table__, PredictionReview.__table__
        feedback = latest_per_prediction(f, "actual_level")
        review = latest_per_prediction(r, "level")
        stmt = (
            select(p.c.level, review.c.level, feedback.c.actual_level, func.count())
            .join(feedback, feedback.c.prediction_id == p.c.id)
            .outerjoin(review, and_(review.c.prediction_id == p.c.id, review.c.rn == 1))
            .where(feedback.c.rn == 1, p.c.model_name == model_name,
                   p.c.created_at >= window.start, p.c.created_at < window.end)
            .group_by(p.c.level, review.c.level, feedback.c.actual_level)
        )
        if model_version is not None:
            stmt = stmt.where(p.c.model_version == model_version)
        position = {level: i for i, level in enumerate(LEVELS)}
        confusion: Confusion = np.zeros((3, 3), dtype=np.int64)
        reviewed = overridden = 0
        async with read_only(self._engine, "feedback cannot be read right now") as conn:
            for predicted, reviewed_level, actual, n in (await conn.execute(stmt)).all():
                final = reviewed_level if reviewed_level is not None else predicted
                if final not in position or actual not in position:
                    continue
                confusion[position[actual], position[final]] += int(n)
                if reviewed_level is not None:
                    reviewed += int(n)
                    overridden += int(n) if reviewed_level != predicted else 0
        if not confusion.sum():
            return None
        return FinalDecisions(int(confusion.sum()), *scores(confusion), reviewed, overridden)
