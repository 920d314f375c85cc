"""Settings of drift detection and model health; their durations are parsed at load."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from app.config.base import group
from app.config.durations import Duration
from app.ml.features import FEATURE_NAMES, NUMERIC

# The drift tests by name (their code is app/monitoring/drift_tests.py, which must offer the same
# names); here so the settings can be checked without importing the monitoring package.
DRIFT_METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
NUMERIC_ONLY_DRIFT_METHODS = frozenset({"ks", "wasserstein"})
# The features a per-group view may group by (app/monitoring/groups.py).
GROUP_DIMENSIONS = ("department", "skill_category", "job_role")


class DriftSettings(BaseSettings):
    model_config = group("FS_DRIFT_")

    share_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that is dataset drift"
    )
    methods: dict[str, str] = Field(
        default_factory=dict, description='Per-feature test, e.g. {"trend_score": "psi"}'
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-feature threshold")
    default_window: Duration = Field(
        default=Duration("24h"), description="Window of GET /v1/drift without start/end/last"
    )
    max_current_rows: int = Field(
        default=500_000, ge=100, description="Larger windows are sampled down to this"
    )
    read_connections: int = Field(
        default=4, ge=1, le=16,
        description="Postgres connections that read a report's window side by side, one time "
        "slice each (extracting and sending a million rows' features takes Postgres ~2.3 s of "
        "CPU; more slices than cores still help, the client parses one while the others are "
        "extracted)",
    )
    # The tests need counts, not a handful of rows: chi-square wants ~5 expected rows in each of
    # ~20 categories, and KS on a few rows flags chance as drift (4 rows gave share 1.00).
    min_rows: int = Field(
        default=100,
        ge=1,
        description="Fewer rows in the window (or the reference sample): the report "
        "says insufficient data and gives no drift verdict",
    )
    confidence_threshold: float = Field(
        default=0.01, gt=0, lt=1,
        description="Confidence drift: the KS p-value below which the window's confidence (the "
        "predicted level's probability) has drifted from the held-out rows'",
    )
    importance_rows: int = Field(
        default=200, ge=0, le=5000,
        description="Importance drift: window rows (and held-out rows) explained per report, a "
        "seeded random sample; 0 turns the section off",
    )
    importance_threshold: float = Field(
        default=0.1, gt=0, le=1,
        description="Importance drift: a feature drifted when its share of the total importance "
        "moved by at least this much",
    )
    evidently_timeout_s: float = Field(
        default=300.0, gt=0, description="Slower Evidently runs fall back to native"
    )
    check_enabled: bool = True
    check_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="Periodic drift check: once per interval across all workers and replicas, at "
        "boundaries aligned to the epoch (hourly at :00 by default)",
    )
    check_window: Duration = Field(default=Duration("24h"), description="Window of the periodic drift check")
    check_engine: Literal["native", "evidently"] = "native"

    @model_validator(mode="after")
    def _known_methods_and_features(self) -> DriftSettings:
        for feature in (*self.methods, *self.thresholds):
            if feature not in FEATURE_NAMES:
                raise ValueError(f"FS_DRIFT_METHODS/THRESHOLDS name an unknown feature: {feature}")
        for feature, method in self.methods.items():
            if method not in DRIFT_METHODS:
                raise ValueError(f"unknown drift method {method!r}; choose from {', '.join(DRIFT_METHODS)}")
            if method in NUMERIC_ONLY_DRIFT_METHODS and feature not in NUMERIC:
                raise ValueError(f"drift method {method!r} needs a numeric feature, not {feature}")
        return self


class HealthSettings(BaseSettings):
    model_config = group("FS_HEALTH_")

    min_accuracy: float = Field(default=0.70, ge=0, le=1, description="Lower accuracy is degraded")
    max_accuracy_decline: float = Field(default=0.05, ge=0, description="A larger decline is a warning")
    p95_latency_ms: float = Field(
        default=500.0, gt=0, description="Higher p95 prediction latency is a warning"
    )
    max_log_backlog_s: float = Field(
        default=60.0, gt=0, description="Older unwritten predictions are a warning"
    )
    window: Duration = Field(default=Duration("7d"), description="Feedback window of the accuracy checks")
    bucket: Duration = Field(default=Duration("1d"), description="Bucket of the accuracy trend")
    latency_window: Duration = Field(default=Duration("1h"), description="Window of the latency check")
    min_feedback: int = Field(
        default=20, ge=1, description="Fewer feedback rows: the accuracy checks report insufficient data"
    )
    min_predictions: int = Field(
        default=100,
        ge=1,
        description="Fewer predictions in the latency window: the latency check reports "
        "insufficient data (a p95 of a few rows is their maximum)",
    )
    drift_max_age: Duration = Field(
        default=Duration("48h"), description="Older drift reports are not used by the drift check"
    )
    trend_tolerance: float = Field(default=0.02, ge=0, description="Accuracy changes within this are stable")


class MonitoringSettings(BaseSettings):
    """Label-free estimation and the per-group views (docs/monitoring.md)."""

    model_config = group("FS_MONITORING_")

    group_gauges: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["department", "skill_category"],
        description="Group dimensions exported as Prometheus gauges when their view is computed "
        "(comma-separated; job_role has ~20 groups, so it is not exported unless named)",
    )

    @field_validator("group_gauges", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("group_gauges")
    @classmethod
    def _known_dimensions(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in GROUP_DIMENSIONS]
        if unknown:
            raise ValueError(f"FS_MONITORING_GROUP_GAUGES: unknown dimension(s) {', '.join(unknown)};"
                             f" choose from {', '.join(GROUP_DIMENSIONS)}")
        return value
