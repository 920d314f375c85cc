"""Response models of the monitoring API: drift, performance, model health.

They describe the bodies exactly as the monitoring services produce them (field names, values,
which fields may be absent). Timestamps are ISO 8601 strings as the services format them, not
``datetime``: pydantic would re-format them (``Z`` for ``+00:00``) and change the values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from app.config import Duration

Engine = Literal["native", "evidently"]
Level = Literal["LOW", "MEDIUM", "HIGH"]
IsoText = str  # an ISO 8601 date-time with its UTC offset


def _in_range(value: Any) -> Any:
    """A duration too large for a timedelta is a client's mistake (422), not an OverflowError (500)."""
    if isinstance(value, str):
        try:
            Duration(value)
        except OverflowError:
            raise ValueError("the duration is too large") from None
        except ValueError:
            pass  # Duration's own validation reports it
    return value


# A duration query parameter (?last=, ?bucket=): the settings' grammar, parsed once by FastAPI.
QueryDuration = Annotated[Duration, BeforeValidator(_in_range)]


class FeatureDriftOut(BaseModel):
    feature: str = Field(description="A feature name, or predicted_level")
    kind: Literal["numeric", "categorical"]
    method: str = Field(description="Test id: ks, chisquare, z, wasserstein, jensenshannon, psi")
    method_label: str = Field(description="Evidently's display name of the method")
    threshold: float
    score: float
    score_kind: Literal["p_value", "distance", "unknown"] = Field(
        description="p_value: drifted when below the threshold; distance: when at or above it")
    drifted: bool


class UnseenByFeature(BaseModel):
    count: int
    rate: float


class UnseenCategories(BaseModel):
    rows_with_unseen: int = Field(description="Window rows with a category unseen in training")
    rate: float
    by_feature: dict[str, UnseenByFeature]


class PredictionDistribution(BaseModel):
    reference: dict[str, float] = Field(description="Share of each predicted level on the reference")
    current: dict[str, float] = Field(description="Share of each predicted level in the window")


class ConfidenceDriftOut(BaseModel):
    method: Literal["ks"] = Field(description="Kolmogorov-Smirnov two-sample test")
    threshold: float = Field(description="Drift when the p-value is below it")
    score: float = Field(description="The p-value")
    drifted: bool
    reference_source: str = Field(description="holdout: the version's held-out rows")
    reference_rows: int
    current_rows: int
    reference_mean: float = Field(description="Mean probability of the predicted level")
    current_mean: float
    reference_quantiles: dict[str, float] = Field(description="p10, p50, p90")
    current_quantiles: dict[str, float]


class FeatureImportanceOut(BaseModel):
    feature: str = Field(description="An HR feature (one-hot columns summed back)")
    reference: float = Field(description="Mean |contribution| to the predicted level, held-out rows")
    current: float = Field(description="The same on the window's sample")
    reference_share: float = Field(description="Its share of the total importance, held-out rows")
    current_share: float
    change: float = Field(description="current_share - reference_share")
    drifted: bool = Field(description="|change| at or above the threshold")


class ImportanceDriftOut(BaseModel):
    method: Literal["mean_abs_tree_shap_share"] = Field(
        description="Exact TreeSHAP contributions to each row's predicted level (docs/monitoring.md)")
    threshold: float = Field(description="Share change that counts as drift (FS_DRIFT_IMPORTANCE_THRESHOLD)")
    reference_source: str = Field(description="holdout: the version's held-out rows")
    reference_rows: int = Field(description="Held-out rows explained (a seeded sample)")
    current_rows: int = Field(description="Window rows explained (a seeded sample)")
    drifted: bool = Field(description="Some feature's share moved by the threshold or more")
    features: list[FeatureImportanceOut] = Field(description="Most important in the window first")


class DriftReportOut(BaseModel):
    engine: Engine = Field(description="The engine that produced the per-feature results")
    requested_engine: Engine
    model_name: str
    model_version: str
    reference_rows: int
    current_rows: int = Field(description="Rows compared (a sample when the window is over the cap)")
    rows_in_window: int
    window_start: IsoText | None
    window_end: IsoText | None
    sampled: bool
    features: list[FeatureDriftOut] = Field(description="Empty when status is insufficient_data")
    share_threshold: float
    prediction_drift: FeatureDriftOut | None
    prediction_distribution: PredictionDistribution
    unseen_categories: UnseenCategories
    notes: list[str]
    fallback_reason: str | None = Field(
        description="Why Evidently did not answer (the native engine did), or null")
    duration_s: float
    report_id: str | None = Field(description="Id of the stored drift_report row")
    status: Literal["ok", "insufficient_data"] = Field(
        description="insufficient_data: fewer than min_rows rows in the window or the reference; "
                    "no test ran and there is no verdict")
    min_rows: int
    reason: str | None = Field(description="Why there is no verdict, when there is none")
    drifted_features: list[str]
    drift_share: float | None = Field(description="Share of drifted features; null without verdict")
    dataset_drift: bool | None = Field(description="drift_share >= share_threshold; null without verdict")
    confidence_drift: ConfidenceDriftOut | None = Field(
        description="The predicted level's probability against the version's held-out "
        "rows; null without a verdict (too few rows, or a version without held-out rows)")
    importance_drift: ImportanceDriftOut | None = Field(
        description="What the model's decisions lean on, against the held-out rows; null "
        "when the version cannot be explained (a note says why) or the window is too small")


class TimeSpan(BaseModel):
    start: IsoText
    end: IsoText


class ClassScores(BaseModel):
    feedback: int
    accuracy: float
    f1_macro: float
    recall: dict[str, float | None] = Field(description="Per level; null when it never occurred")


class EstimateSummary(BaseModel):
    rows: int = Field(description="Predictions the estimate is over (no labels needed)")
    accuracy: float = Field(
        description="Expected accuracy: mean calibrated probability of the predicted level")
    accuracy_interval: list[float] = Field(description="95% interval given calibration [low, high]")
    f1_macro: float = Field(description="Macro-F1 of the expected confusion matrix")
    f1_macro_interval: list[float] = Field(description="95% interval given calibration [low, high]")


class Estimated(EstimateSummary):
    expected_confusion: dict[str, dict[str, float]] = Field(
        description="Expected counts: predicted level -> actual level -> rows")


class BucketScoreOut(BaseModel):
    start: IsoText
    end: IsoText
    feedback: int
    accuracy: float | None
    f1_macro: float | None
    recall: dict[str, float | None] = Field(description="Per level; empty without feedback")
    estimated: EstimateSummary | None = Field(
        None, description="Label-free estimate over the bucket's predictions (no feedback used); "
        "null without predictions or calibration")


class TrendOut(BaseModel):
    direction: Literal["improving", "declining", "stable", "insufficient_data"]
    change: float | None = Field(description="Change of the fitted accuracy line, first to last bucket")
    buckets_with_feedback: int
    # Absent when direction is insufficient_data.
    first_accuracy: float | None = None
    last_accuracy: float | None = None


class FinalDecisionScores(ClassScores):
    """The scores of the final decisions: the latest review's level where a person reviewed the
    prediction, else the model's (docs/oversight.md)."""

    reviewed: int = Field(description="Judged predictions that a person reviewed")
    overridden: int = Field(description="Judged predictions whose final level differs from the model's")


class PerformanceOut(BaseModel):
    model_name: str
    model_version: str | None = Field(description="null: every version of the model")
    window: TimeSpan
    bucket_seconds: float
    overall: ClassScores | None = Field(description="null when the window has no feedback")
    trend: TrendOut
    buckets: list[BucketScoreOut]
    final_decisions: FinalDecisionScores | None = Field(
        None, description="The final decisions' scores on the same feedback; null without feedback")
    estimated: Estimated | None = Field(
        None, description="Label-free estimate over every prediction of the window (calibrated "
        "confidence, docs/monitoring.md); null without predictions or calibration")
    uncalibrated_versions: list[str] = Field(
        default_factory=list, description="Versions in the window without calibration maps: "
        "their predictions are not in the estimate")


class ModelRef(BaseModel):
    name: str
    version: str
    semver: str | None


CheckStatus = Literal["ok", "skipped", "insufficient_data", "warning", "degraded"]


class HealthCheckOut(BaseModel):
    """One check. Which of the optional fields are present depends on the check and its status."""

    check: Literal["accuracy", "accuracy_trend", "latency_p95", "drift", "prediction_log_backlog"]
    status: CheckStatus = Field(description="ok, skipped and insufficient_data do not count")
    reason: str
    value: float | None = None
    threshold: float | None = None
    feedback: int | None = None
    predictions: int | None = None
    rows: int | None = Field(None, description="Rows the check had (insufficient_data)")
    min_rows: int | None = Field(None, description="Rows the check needs (insufficient_data)")
    report_id: str | None = Field(None, description="The stored drift report the check read")
    source: Literal["estimated"] | None = Field(
        None, description="estimated: too little feedback, so the label-free estimate was judged")
    interval_low: float | None = Field(None, description="The estimate's 95% interval (estimated)")
    interval_high: float | None = None


class ModelHealthOut(BaseModel):
    model: ModelRef
    status: Literal["healthy", "warning", "degraded"] = Field(description="The most severe check wins")
    reasons: list[str] = Field(description="The reason of every warning or degraded check")
    insufficient_data: list[str] = Field(description="Checks with too few rows to judge")
    checks: list[HealthCheckOut]
    checked_at: IsoText
