"""Drift inside the model, beside the feature drift: how sure the model is (confidence drift).

Confidence: the predicted level's probability in the window against the model's confidence on
its held-out rows (Kolmogorov-Smirnov two-sample test). A model that has become unsure — traffic
far from what it learned — shows it here before any label arrives; a feature can drift without
it, and it can move while no single feature drifts enough to be flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.monitoring import drift_tests as stats
from app.monitoring.data import Reference, Window

QUANTILES = {"p10": 10, "p50": 50, "p90": 90}


@dataclass
class ConfidenceDrift:
    method: str  # "ks": the score is its p-value; drift when below the threshold
    threshold: float
    score: float
    drifted: bool
    reference_source: str  # "holdout": the version's held-out rows
    reference_rows: int
    current_rows: int
    reference_mean: float
    current_mean: float
    reference_quantiles: dict[str, float]
    current_quantiles: dict[str, float]


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {name: round(float(np.percentile(values, q)), 6) for name, q in QUANTILES.items()}


def confidence_drift(reference: Reference, window: Window, threshold: float,
                     min_rows: int) -> ConfidenceDrift | None:
    """None when either side has fewer than ``min_rows`` confidences (e.g. a version trained
    before held-out rows were kept): no verdict rather than one on a handful of values."""
    ref, cur = reference.confidence, window.confidence()
    if len(ref) < min_rows or len(cur) < min_rows:
        return None
    score = stats.ks_pvalue(ref, cur)
    return ConfidenceDrift(
        method="ks", threshold=threshold, score=score, drifted=score < threshold,
        reference_source=reference.confidence_source, reference_rows=len(ref),
        current_rows=len(cur), reference_mean=round(float(ref.mean()), 6),
        current_mean=round(float(cur.mean()), 6), reference_quantiles=_quantiles(ref),
        current_quantiles=_quantiles(cur),
    )
