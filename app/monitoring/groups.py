"""Per-group views: how the model treats each department, skill category or job role.

Per group: predictions, the share of each predicted level, realized accuracy where feedback exists
(latest feedback per prediction wins, as in performance), the label-free estimate, and the ratio
of the group's HIGH rate to the overall HIGH rate (1.0 = as often as everyone; the disparity an HR
team looks at first). The database returns counts per group, never rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config.monitoring import GROUP_DIMENSIONS
from app.db.dialect import json_text
from app.db.queries import latest_per_prediction
from app.db.session import read_only
from app.db.tables import Prediction, PredictionFeedback
from app.metrics import ServiceMetrics
from app.ml.features import LEVELS
from app.monitoring.estimation import Estimate, EstimationService
from app.monitoring.windows import TimeWindow

GROUP_FIELDS = GROUP_DIMENSIONS
HIGH = "HIGH"


@dataclass
class GroupView:
    group: str
    predictions: int
    level_share: dict[str, float]
    high_rate_ratio: float | None
    feedback: int
    accuracy: float | None
    estimated: Estimate | None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "predictions": self.predictions,
                "level_share": self.level_share, "high_rate_ratio": self.high_rate_ratio,
                "feedback": self.feedback, "accuracy": self.accuracy,
                "estimated": _estimate_summary(self.estimated)}


@dataclass
class GroupReport:
    model_name: str
    model_version: str | None
    window: TimeWindow
    by: str
    predictions: int
    high_rate: float | None
    groups: list[GroupView]
    uncalibrated_versions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name, "model_version": self.model_version,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "by": self.by, "predictions": self.predictions, "high_rate": self.high_rate,
            "groups": [g.to_dict() for g in self.groups],
            "uncalibrated_versions": self.uncalibrated_versions,
        }


def _estimate_summary(found: Estimate | None) -> dict[str, Any] | None:
    if found is None:
        return None
    body = found.to_dict()
    del body["expected_confusion"]
    return body


class GroupService:
    def __init__(self, *, engine: AsyncEngine, estimation: EstimationService,
                 metrics: ServiceMetrics, exported: tuple[str, ...]) -> None:
        self._engine = engine
        self._estimation = estimation
        self._metrics = metrics
        self.exported = exported

    async def compute(self, window: TimeWindow, by: str, model_name: str,
                      model_version: str | None = None) -> GroupReport:
        if by not in GROUP_FIELDS:  # the API validates; a caller in code gets a clear error too
            raise ValueError(f"cannot group by {by!r}; one of {', '.join(GROUP_FIELDS)}")
        p = Prediction.__table__
        group = json_text(p.c.features, by, self._engine.dialect.name)
        levels = await self._level_counts(window, group, model_name, model_version)
        realized = await self._realized(window, group, model_name, model_version)
        estimated, _, uncalibrated = await self._estimation.by_key(
            window, group, model_name, model_version)
        total = sum(sum(c.values()) for c in levels.values())
        high_total = sum(c.get(HIGH, 0) for c in levels.values())
        high_rate = high_total / total if total else None
        views = []
        for name in sorted(levels):
            counts = levels[name]
            n = sum(counts.values())
            share = {level: round(counts.get(level, 0) / n, 6) for level in LEVELS}
            judged, right = realized.get(name, (0, 0))
            views.append(GroupView(
                group=name, predictions=n, level_share=share,
                high_rate_ratio=(round(share[HIGH] / high_rate, 6) if high_rate else None),
                feedback=judged, accuracy=round(right / judged, 6) if judged else None,
                estimated=estimated.get(name),
            ))
        report = GroupReport(model_name, model_version, window, by, total,
                             round(high_rate, 6) if high_rate is not None else None, views,
                             uncalibrated)
        if by in self.exported:
            self._export(report)
        return report

    def _export(self, report: GroupReport) -> None:
        """Gauges for the groups of the dimensions named in the settings only: a bounded set."""
        for view in report.groups:
            labels = (report.model_name, report.by, view.group)
            self._metrics.group_predictions.labels(*labels).set(view.predictions)
            if view.high_rate_ratio is not None:
                self._metrics.group_high_rate_ratio.labels(*labels).set(view.high_rate_ratio)
            if view.estimated is not None:
                self._metrics.group_estimated_accuracy.labels(*labels).set(view.estimated.accuracy)

    async def _level_counts(self, window: TimeWindow, group: Any, model_name: str,
                            model_version: str | None) -> dict[str, dict[str, int]]:
        p = Prediction.__table__
        stmt = (select(group, p.c.level, func.count())
                .where(p.c.model_name == model_name, p.c.created_at >= window.start,
                       p.c.created_at < window.end)
                .group_by(group, p.c.level))
        if model_version is not None:
            stmt = stmt.where(p.c.model_version == model_version)
        out: dict[str, dict[str, int]] = {}
        async with read_only(self._engine, "predictions cannot be read right now") as conn:
            for name, level, n in (await conn.execute(stmt)).all():
                out.setdefault(str(name), {})[level] = int(n)
        return out

    async def _realized(self, window: TimeWindow, group: Any, model_name: str,
                        model_version: str | None) -> dict[str, tuple[int, int]]:
        """(predictions with feedback, of which right) per group."""
        p, f = Prediction.__table__, PredictionFeedback.__table__
        ranked = latest_per_prediction(f, "actual_level")
        right = (ranked.c.actual_level == p.c.level)
        stmt = (
            select(group, right.label("right"), func.count())
            .join(ranked, ranked.c.prediction_id == p.c.id)
            .where(ranked.c.rn == 1, p.c.model_name == model_name,
                   p.c.created_at >= window.start, p.c.created_at < window.end)
            .group_by(group, right)
        )
        if model_version is not None:
            stmt = stmt.where(p.c.model_version == model_version)
        out: dict[str, tuple[int, int]] = {}
        async with read_only(self._engine, "feedback cannot be read right now") as conn:
            for name, is_right, n in (await conn.execute(stmt)).all():
                judged, hits = out.get(str(name), (0, 0))
                out[str(name)] = (judged + int(n), hits + (int(n) if is_right else 0))
        return out
