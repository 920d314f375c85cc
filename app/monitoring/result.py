"""The one result schema both engines produce (stored in ``drift_report.result`` and served as JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from app.monitoring.model_drift import ConfidenceDrift, ImportanceDrift

OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # "numeric" or "categorical"
    method: str  # stats.METHODS key
    method_label: str
    threshold: float
    score: float
    score_kind: str  # "p_value" (drift when low) or "distance" (drift when high)
    drifted: bool


@dataclass
class UnseenCount:
    count: int
    rate: float


@dataclass
class UnseenCategories:
    """Window rows with a category the model never saw in training, overall and per feature."""

    rows_with_unseen: int
    rate: float
    by_feature: dict[str, UnseenCount]


@dataclass
class DriftResult:
    engine: str  # the engine that produced the per-feature results
    requested_engine: str
    model_name: str
    model_version: str
    reference_rows: int
    current_rows: int
    rows_in_window: int
    window_start: datetime | None
    window_end: datetime | None
    sampled: bool
    features: list[FeatureDrift]
    share_threshold: float
    prediction_drift: FeatureDrift | None
    prediction_distribution: dict[str, dict[str, float]]
    unseen_categories: UnseenCategories
    notes: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
    duration_s: float = 0.0
    report_id: str | None = None
    # "ok", or "insufficient_data": fewer rows than ``min_rows`` in the window or the reference;
    # then no test is run and there is no verdict (dataset_drift and drift_share are None).
    status: str = OK
    min_rows: int = 0
    reason: str | None = None
    # Drift inside the model (model_drift): None when there is no verdict to give.
    confidence_drift: ConfidenceDrift | None = None
    importance_drift: ImportanceDrift | None = None

    @property
    def insufficient(self) -> bool:
        return self.status == INSUFFICIENT_DATA

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def drift_share(self) -> float | None:
        if self.insufficient:
            return None
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def dataset_drift(self) -> bool | None:
        share = self.drift_share
        if share is None:
            return None
        return bool(self.features) and share >= self.share_threshold

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for key in ("window_start", "window_end"):
            body[key] = body[key].isoformat() if body[key] else None
        body["drifted_features"] = self.drifted_features
        body["drift_share"] = self.drift_share
        body["dataset_drift"] = self.dataset_drift
        return body


def shortage(current_rows: int, reference_rows: int, min_rows: int) -> str | None:
    """Why there are too few rows for a verdict, or None when there are enough."""
    if current_rows < min_rows:
        return (f"insufficient data: {current_rows} predictions in the window; at least "
                f"{min_rows} are needed for a drift verdict (FS_DRIFT_MIN_ROWS)")
    if reference_rows < min_rows:
        return (f"insufficient data: the reference sample has {reference_rows} rows; at least "
                f"{min_rows} are needed for a drift verdict (FS_DRIFT_MIN_ROWS)")
    return None
