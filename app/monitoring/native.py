"""The native drift engine: numpy/scipy tests per feature on the reference and the current window."""

from __future__ import annotations

import time

import numpy as np

from app.cpu import cpu_pool
from app.ml.features import CATEGORICAL, FEATURE_NAMES, NUMERIC
from app.monitoring import drift_tests as stats
from app.monitoring.data import ColumnSet, Reference, Window
from app.monitoring.result import (
    INSUFFICIENT_DATA,
    DriftResult,
    FeatureDrift,
    UnseenCategories,
    UnseenCount,
)

# Numeric columns with at most this many reference values are counted, not binned (Evidently's rule).
COUNTED_NUMERIC_MAX = 20
# Share of each predicted level, on the reference and in the current window.
Shares = dict[str, dict[str, float]]


def _numeric_score(method: str, ref: np.ndarray, cur: np.ndarray) -> float:
    if method == "ks":
        return stats.ks_pvalue(ref, cur)
    if method == "wasserstein":
        return stats.wasserstein_normed(ref, cur)
    if method in ("jensenshannon", "psi") and len(np.unique(ref)) > COUNTED_NUMERIC_MAX:
        ref_shares, cur_shares = stats.binned_shares(ref, cur, fill_zeroes=method == "psi")
        if method == "psi":
            return stats.psi_from_shares(ref_shares, cur_shares)
        from scipy.spatial import distance

        return float(distance.jensenshannon(ref_shares, cur_shares))
    return _counts_score(method, stats.numeric_counts(ref), stats.numeric_counts(cur))


def _counts_score(method: str, ref: stats.Counts, cur: stats.Counts) -> float:
    if method == "chisquare":
        return stats.chisquare_pvalue(ref, cur)
    if method == "z":
        return stats.z_pvalue(ref, cur)
    if method == "jensenshannon":
        return stats.jensenshannon_counts(ref, cur)
    if method == "psi":
        return stats.psi_counts(ref, cur)
    raise ValueError(f"method {method!r} does not apply to a categorical column")


def _distinct(ref: np.ndarray, cur: np.ndarray) -> int:
    """Distinct values of both samples; the current one is only scanned when it can matter."""
    n_ref = len(np.unique(ref))
    if n_ref > stats.FEW_VALUES_MAX:
        return n_ref
    return len(np.unique(np.concatenate([np.unique(ref), np.unique(cur)])))


def feature_drift(
    name: str, reference: ColumnSet, current: ColumnSet, reference_rows: int,
    method: str | None = None, threshold: float | None = None,
) -> FeatureDrift:
    if name in NUMERIC:
        ref, cur = reference.numeric[name], current.numeric[name]
        chosen = method or stats.default_method("numeric", reference_rows, _distinct(ref, cur))
        score = _numeric_score(chosen, ref, cur)
        kind = "numeric"
    else:
        ref_c, cur_c = reference.categorical[name], current.categorical[name]
        distinct = len(set(ref_c) | set(cur_c))
        chosen = method or stats.default_method("categorical", reference_rows, distinct)
        score = _counts_score(chosen, ref_c, cur_c)
        kind = "categorical"
    spec = stats.METHODS[chosen]
    limit = spec.default_threshold if threshold is None else threshold
    return FeatureDrift(
        feature=name, kind=kind, method=chosen, method_label=spec.label, threshold=limit,
        score=score, score_kind=spec.kind, drifted=spec.drifted(score, limit),
    )


def prediction_drift(reference: Reference, current: ColumnSet) -> tuple[FeatureDrift | None, Shares]:
    """Drift of the predicted-level distribution, against the model's predictions on its reference."""
    ref, cur = reference.columns.levels, current.levels
    shares = {
        "reference": {k: v / max(sum(ref.values()), 1) for k, v in ref.items()},
        "current": {k: v / max(sum(cur.values()), 1) for k, v in cur.items()},
    }
    if not sum(cur.values()):
        return None, shares
    distinct = len({k for k, v in ref.items() if v} | set(cur))
    chosen = stats.default_method("categorical", reference.rows, distinct)
    spec = stats.METHODS[chosen]
    score = _counts_score(chosen, ref, cur)
    drift = FeatureDrift(
        feature="predicted_level", kind="categorical", method=chosen, method_label=spec.label,
        threshold=spec.default_threshold, score=score, score_kind=spec.kind,
        drifted=spec.drifted(score, spec.default_threshold),
    )
    return drift, shares


def unseen_summary(current: ColumnSet) -> UnseenCategories:
    rows = max(current.rows, 1)
    return UnseenCategories(
        rows_with_unseen=current.rows_with_unseen,
        rate=current.rows_with_unseen / rows,
        by_feature={name: UnseenCount(current.unseen.get(name, 0), current.unseen.get(name, 0) / rows)
                    for name in CATEGORICAL},
    )


def run_native(
    reference: Reference, window: Window, share_threshold: float,
    methods: dict[str, str] | None = None, thresholds: dict[str, float] | None = None,
    current: ColumnSet | None = None, requested_engine: str = "native",
) -> DriftResult:
    """The whole native report (blocking: run it in a thread)."""
    started = time.perf_counter()
    methods, thresholds = methods or {}, thresholds or {}
    current = current or ColumnSet.from_arrow(window.table, reference.vocabulary)
    # Side by side: a feature's time is numpy's sorts and scans, which release the GIL.
    features = list(cpu_pool().map(
        lambda name: feature_drift(name, reference.columns, current, reference.rows,
                                   methods.get(name), thresholds.get(name)),
        FEATURE_NAMES,
    ))
    drift, shares = prediction_drift(reference, current)
    result = base_result(reference, window, share_threshold, "native", requested_engine, features,
                         current, drift, shares)
    result.duration_s = time.perf_counter() - started
    return result


def base_result(
    reference: Reference, window: Window, share_threshold: float, engine: str,
    requested_engine: str, features: list[FeatureDrift], current: ColumnSet,
    drift: FeatureDrift | None = None, shares: Shares | None = None,
) -> DriftResult:
    if shares is None:  # the caller did not compute the predicted-level drift: do it here
        drift, shares = prediction_drift(reference, current)
    notes = [n for n in (window.note(),) if n]
    return DriftResult(
        engine=engine, requested_engine=requested_engine, model_name=reference.model_name,
        model_version=reference.model_version, reference_rows=reference.rows,
        current_rows=window.rows, rows_in_window=window.rows_in_window,
        window_start=window.start, window_end=window.end, sampled=window.sampled,
        features=features, share_threshold=share_threshold, prediction_drift=drift,
        prediction_distribution=shares, unseen_categories=unseen_summary(current), notes=notes,
    )


def insufficient_result(reference: Reference, window: Window, share_threshold: float,
                        requested_engine: str, min_rows: int, reason: str) -> DriftResult:
    """A report without tests or verdict: too few rows. The counts (predicted levels, unseen
    categories) are still given, since they describe the rows rather than judge them."""
    current = ColumnSet.from_arrow(window.table, reference.vocabulary)
    _, shares = prediction_drift(reference, current)
    result = base_result(reference, window, share_threshold, requested_engine, requested_engine,
                         [], current, None, shares)
    result.status, result.min_rows, result.reason = INSUFFICIENT_DATA, min_rows, reason
    return result
