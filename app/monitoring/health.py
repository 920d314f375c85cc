"""Model health: every check adds its reason; the most severe status wins.

Statuses rank ok < warning < degraded. Checks never lower a status another check raised, and a
check without enough data is reported as skipped rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import HealthSettings
from app.db.session import read_only
from app.db.tables import Prediction
from app.errors import ModelNotFound
from app.monitoring.drift_service import DriftService
from app.monitoring.estimation import Estimate
from app.monitoring.performance import PerformanceService
from app.monitoring.windows import TimeWindow
from app.prediction_log.log import PredictionLog
from app.serving.model_slot import ModelSlot

# "insufficient_data": too few rows for this check to judge (the check says how many it had and
# how many it needs); "skipped": nothing to judge at all (no drift report, one trend bucket).
SEVERITY = {"ok": 0, "skipped": 0, "insufficient_data": 0, "warning": 1, "degraded": 2}
INSUFFICIENT = "insufficient_data"
STATUS_NAME = {0: "healthy", 1: "warning", 2: "degraded"}

CheckValue = float | int | str | None


@dataclass
class Check:
    """One check's verdict; ``values`` are the figures it judged (which ones depends on the check)."""

    check: str
    status: str
    reason: str
    values: dict[str, CheckValue] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        return SEVERITY[self.status] > 0

    def to_dict(self) -> dict[str, CheckValue]:
        return {"check": self.check, "status": self.status, "reason": self.reason, **self.values}


def _check(name: str, status: str, reason: str, **values: CheckValue) -> Check:
    return Check(name, status, reason, values)


def overall(checks: list[Check]) -> str:
    return STATUS_NAME[max((SEVERITY[c.status] for c in checks), default=0)]


@dataclass
class HealthReport:
    model_name: str
    model_version: str
    model_semver: str | None
    checks: list[Check]
    checked_at: datetime

    @property
    def status(self) -> str:
        return overall(self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/models/{name}/health``."""
        return {
            "model": {"name": self.model_name, "version": self.model_version,
                      "semver": self.model_semver},
            "status": self.status,
            "reasons": [c.reason for c in self.checks if c.counts],
            # The checks that had too few rows to judge: the status does not count them.
            "insufficient_data": [c.check for c in self.checks if c.status == INSUFFICIENT],
            "checks": [c.to_dict() for c in self.checks],
            "checked_at": self.checked_at.isoformat(),
        }


class HealthService:
    def __init__(self, *, engine: AsyncEngine, models: ModelSlot, performance: PerformanceService,
                 drift: DriftService, prediction_log: PredictionLog, settings: HealthSettings) -> None:
        self._engine = engine
        self._models = models
        self._performance = performance
        self._drift = drift
        self._log = prediction_log
        self.settings = settings

    async def check(self, name: str) -> HealthReport:
        model = self._models.require()
        if name != model.name:
            raise ModelNotFound(f"model {name!r} is not the model this service serves")
        now = datetime.now(UTC)
        checks = [
            *await self._accuracy_checks(model.name, model.version, now),
            await self._latency_check(model.name, model.version, now),
            await self._drift_check(model.name, model.version, now),
            self._backlog_check(),
        ]
        return HealthReport(model.name, model.version, model.semver, checks, now)

    async def _accuracy_checks(self, name: str, version: str, now: datetime) -> list[Check]:
        s = self.settings
        window = TimeWindow.last(s.window, now)
        perf = await self._performance.compute(window, s.bucket.timedelta, name, version)
        total = perf.overall
        if total is None or total.feedback < s.min_feedback:
            got = total.feedback if total else 0
            reason = (f"insufficient data: {got} feedback rows in the last {s.window}; "
                      f"{s.min_feedback} needed (FS_HEALTH_MIN_FEEDBACK)")
            estimated = self._estimated_accuracy_check(perf.estimated, got)
            return [estimated or _check("accuracy", INSUFFICIENT, reason, feedback=got, rows=got,
                                        min_rows=s.min_feedback),
                    _check("accuracy_trend", INSUFFICIENT, reason, rows=got, min_rows=s.min_feedback)]
        accuracy = total.accuracy
        low = accuracy < s.min_accuracy
        checks = [_check(
            "accuracy", "degraded" if low else "ok",
            f"accuracy {accuracy:.3f} over the last {s.window} is "
            f"{'below' if low else 'at or above'} {s.min_accuracy:.2f}",
            value=accuracy, threshold=s.min_accuracy, feedback=total.feedback,
        )]
        change = perf.trend.change
        if change is None:
            checks.append(_check("accuracy_trend", "skipped", "feedback in fewer than two buckets"))
        else:
            declining = change < -s.max_accuracy_decline
            checks.append(_check(
                "accuracy_trend", "warning" if declining else "ok",
                f"accuracy changed by {change:+.3f} over the last {s.window}"
                + (f" (declining by more than {s.max_accuracy_decline:.2f})" if declining else ""),
                value=change, threshold=-s.max_accuracy_decline,
            ))
        return checks

    def _estimated_accuracy_check(self, found: Estimate | None, feedback: int) -> Check | None:
        """Too little feedback: judge the label-free estimate instead (docs/monitoring.md), when
        the version has calibration and the window enough predictions; else None."""
        s = self.settings
        if found is None or found.rows < s.min_predictions:
            return None
        low = found.accuracy < s.min_accuracy
        return _check(
            "accuracy", "degraded" if low else "ok",
            f"estimated accuracy {found.accuracy:.3f} over the last {s.window} (no labels: only "
            f"{feedback} feedback rows, {s.min_feedback} needed) is "
            f"{'below' if low else 'at or above'} {s.min_accuracy:.2f}",
            value=round(found.accuracy, 6), threshold=s.min_accuracy, feedback=feedback,
            source="estimated", rows=found.rows, interval_low=round(found.accuracy_interval[0], 6),
            interval_high=round(found.accuracy_interval[1], 6),
        )

    async def _latency_check(self, name: str, version: str, now: datetime) -> Check:
        s = self.settings
        since = now - s.latency_window.timedelta
        p = Prediction.__table__
        where = (p.c.model_name == name, p.c.model_version == version, p.c.created_at >= since)
        async with read_only(self._engine, "prediction latencies cannot be read right now") as conn:
            n = (await conn.execute(select(func.count()).select_from(p).where(*where))).scalar_one()
            if n < s.min_predictions:  # the p95 of a few rows is their maximum
                return _check(
                    "latency_p95", INSUFFICIENT,
                    f"insufficient data: {n} predictions in the last {s.latency_window}; "
                    f"{s.min_predictions} needed (FS_HEALTH_MIN_PREDICTIONS)",
                    predictions=n, rows=n, min_rows=s.min_predictions)
            # The nearest-rank 95th percentile, on both databases.
            rank = max(math.ceil(0.95 * n), 1)
            p95 = (await conn.execute(
                select(p.c.latency_ms).where(*where).order_by(p.c.latency_ms).offset(rank - 1).limit(1)
            )).scalar_one()
        slow = p95 > s.p95_latency_ms
        return _check(
            "latency_p95", "warning" if slow else "ok",
            f"p95 prediction latency {p95:.1f} ms over the last {s.latency_window} is "
            f"{'above' if slow else 'within'} {s.p95_latency_ms:.0f} ms",
            value=p95, threshold=s.p95_latency_ms, predictions=n,
        )

    async def _drift_check(self, name: str, version: str, now: datetime) -> Check:
        s = self.settings
        latest = await self._drift.latest_stored(name, version, now - s.drift_max_age.timedelta)
        if latest is None:
            return _check("drift", "skipped",
                          f"no drift report of this version in the last {s.drift_max_age}")
        body, report_id = latest.result, str(latest.id)
        drifted = body.get("drifted_features", [])
        if body.get("status") == INSUFFICIENT:  # that report gave no verdict: neither do we
            return _check("drift", INSUFFICIENT, body.get("reason") or "insufficient data",
                          rows=body.get("current_rows"), min_rows=body.get("min_rows"),
                          report_id=report_id)
        if latest.dataset_drift:
            return _check("drift", "warning",
                          f"dataset drift: {len(drifted)} features drifted ({', '.join(drifted)})",
                          value=latest.drift_share, report_id=report_id)
        return _check("drift", "ok", f"no dataset drift (share {latest.drift_share:.2f})",
                      value=latest.drift_share, report_id=report_id)

    def _backlog_check(self) -> Check:
        s = self.settings
        age = self._log.oldest_pending_age()
        late = age > s.max_log_backlog_s
        return _check(
            "prediction_log_backlog", "warning" if late else "ok",
            f"the oldest unwritten prediction is {age:.1f} s old"
            + (f" (more than {s.max_log_backlog_s:.0f} s)" if late else ""),
            value=age, threshold=s.max_log_backlog_s,
        )
