"""Model performance from feedback: accuracy, macro-F1 and per-class recall per time bucket, and the trend.

Feedback is joined to the predictions it judges; when a prediction got several feedback rows the
latest wins. Buckets follow the time the prediction was made. The database returns one count per
(bucket, predicted level, actual level), never the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import bucket_index
from app.db.tables import Prediction, PredictionFeedback
from app.errors import InvalidInput
from app.metrics import ServiceMetrics
from app.ml.features import LEVELS
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


def scores(confusion: np.ndarray) -> tuple[float, float, dict[str, float | None]]:
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


def trend(buckets: list[BucketScore], tolerance: float) -> dict:
    """Least-squares line through bucket accuracies (weighted by feedback count): its change
    from the first to the last bucket with feedback."""
    points = [(i, b.accuracy, b.feedback) for i, b in enumerate(buckets) if b.feedback]
    if len(points) < 2:
        return {"direction": "insufficient_data", "change": None, "buckets_with_feedback": len(points)}
    x, y, w = (np.array(v, dtype=float) for v in zip(*points))
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
    change = slope * (x[-1] - x[0])
    direction = "improving" if change > tolerance else "declining" if change < -tolerance else "stable"
    return {"direction": direction, "change": round(change, 6), "buckets_with_feedback": len(points),
            "first_accuracy": float(y[0]), "last_accuracy": float(y[-1])}


class PerformanceService:
    def __init__(self, engine: AsyncEngine, metrics: ServiceMetrics, trend_tolerance: float) -> None:
        self._engine = engine
        self._metrics = metrics
        self.trend_tolerance = trend_tolerance

    async def compute(self, window: TimeWindow, bucket: timedelta, model_name: str,
                      model_version: str | None = None) -> dict:
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
        total = sum(counts.values()) if counts else np.zeros((3, 3), int)
        overall = None
        if total.sum():
            acc, f1, recall = scores(total)
            overall = {"feedback": int(total.sum()), "accuracy": acc, "f1_macro": f1, "recall": recall}
        latest = next((b for b in reversed(buckets) if b.feedback), None)
        if latest is not None:
            self._metrics.model_accuracy.set(latest.accuracy)
        return {
            "model_name": model_name, "model_version": model_version,
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "bucket_seconds": seconds, "overall": overall,
            "trend": trend(buckets, self.trend_tolerance),
            "buckets": [b.__dict__ for b in buckets],
        }

    async def _confusions(self, window, seconds, model_name, model_version) -> dict[int, np.ndarray]:
        p, f = Prediction.__table__, PredictionFeedback.__table__
        ranked = select(
            f.c.prediction_id, f.c.actual_level,
            func.row_number().over(partition_by=f.c.prediction_id,
                                   order_by=(f.c.created_at.desc(), f.c.id.desc())).label("rn"),
        ).subquery()
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
        out: dict[int, np.ndarray] = {}
        async with self._engine.connect() as conn:
            for bucket, predicted, actual, n in (await conn.execute(stmt)).all():
                if predicted not in position or actual not in position:
                    continue  # not a level this model predicts; the feedback endpoint validates
                matrix = out.setdefault(int(bucket), np.zeros((3, 3), dtype=np.int64))
                matrix[position[actual], position[predicted]] += int(n)
        return out
