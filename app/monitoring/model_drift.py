"""Drift inside the model, beside the feature drift: how sure it is (confidence drift) and what
its decisions lean on (importance drift).

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
    found = np.percentile(values, list(QUANTILES.values()))  # one partial sort for all
    return {name: round(float(q), 6) for name, q in zip(QUANTILES, found, strict=True)}


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


@dataclass
class FeatureImportance:
    feature: str
    reference: float  # mean |contribution| to the predicted level's probability
    current: float
    reference_share: float  # of the sum over features
    current_share: float
    change: float  # current_share - reference_share
    drifted: bool


@dataclass
class ImportanceDrift:
    """Which features the model's decisions lean on, now against the held-out rows.

    Importance is the mean absolute exact TreeSHAP contribution to each row's predicted level,
    per HR feature, on a bounded random sample of each side; a feature has drifted when its share
    of the total moved by at least the threshold (shares, so that a window where the model is
    merely less sure overall does not flag every feature)."""

    method: str
    threshold: float
    reference_source: str
    reference_rows: int
    current_rows: int
    drifted: bool
    features: list[FeatureImportance]  # most important now first


def mean_abs_contribution(features: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``features``: rows x HR features x classes; each row's predicted class's column."""
    predicted = proba.argmax(axis=1)
    chosen = features[np.arange(len(predicted)), :, predicted]
    result: np.ndarray = np.abs(chosen).mean(axis=0)
    return result


def importance_drift(names: list[str], reference: np.ndarray, current: np.ndarray,
                     reference_rows: int, current_rows: int, threshold: float,
                     reference_source: str) -> ImportanceDrift:
    ref_share = reference / max(float(reference.sum()), 1e-12)
    cur_share = current / max(float(current.sum()), 1e-12)
    rows = [FeatureImportance(name, round(float(r), 6), round(float(c), 6), round(float(rs), 6),
                              round(float(cs), 6), round(float(cs - rs), 6),
                              bool(abs(cs - rs) >= threshold))
            for name, r, c, rs, cs in zip(names, reference, current, ref_share, cur_share,
                                          strict=True)]
    rows.sort(key=lambda f: -f.current)
    return ImportanceDrift("mean_abs_tree_shap_share", threshold, reference_source, reference_rows,
                           current_rows, any(f.drifted for f in rows), rows)
