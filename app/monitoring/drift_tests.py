"""Per-column drift tests in numpy/scipy, with Evidently's default test selection.

Each test takes the reference and current data of one column and returns a score; the caller
compares it with the threshold. p-value tests drift when ``score < threshold`` (KS: ``<=``, as in
Evidently); distance tests drift when ``score >= threshold``. Categorical columns are passed as
value counts (``dict[value, count]``) so the database can aggregate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

# Reference samples up to this size get hypothesis tests; larger ones get distances (Evidently's rule).
SMALL_REFERENCE_MAX = 1000
# A numeric column with at most this many distinct values is tested like a categorical one.
FEW_VALUES_MAX = 5


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # Evidently's display name, so reports of both engines read the same
    default_threshold: float
    kind: str  # "p_value" (drift when below) or "distance" (drift when at or above)

    def drifted(self, score: float, threshold: float) -> bool:
        if self.kind == "p_value":
            return score <= threshold if self.name == "ks" else score < threshold
        return score >= threshold


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ks", "K-S p_value", 0.05, "p_value"),
        Method("chisquare", "chi-square p_value", 0.05, "p_value"),
        Method("z", "Z-test p_value", 0.05, "p_value"),
        Method("wasserstein", "Wasserstein distance (normed)", 0.1, "distance"),
        Method("jensenshannon", "Jensen-Shannon distance", 0.1, "distance"),
        Method("psi", "PSI", 0.1, "distance"),
    )
}
NUMERIC_ONLY = {"ks", "wasserstein"}
# Value -> count: category names, or the numbers of a numeric column with few values.
Counts = Mapping[Any, int]


def default_method(kind: str, reference_rows: int, distinct_values: int) -> str:
    """Evidently's choice: by reference size, column kind and number of distinct values."""
    if reference_rows <= SMALL_REFERENCE_MAX:
        if kind == "numeric" and distinct_values > FEW_VALUES_MAX:
            return "ks"
        return "chisquare" if distinct_values > 2 else "z"
    if kind == "numeric" and distinct_values > FEW_VALUES_MAX:
        return "wasserstein"
    return "jensenshannon"


# -- numeric columns (arrays of values) -----------------------------------------------------------

def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    return float(stats.ks_2samp(reference, current).pvalue)


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> float:
    """Exact first Wasserstein distance of two samples: the area between their CDFs.

    Same value as ``scipy.stats.wasserstein_distance`` (same breakpoints, same sum), about 4x
    faster on 1M rows against a few thousand: each sample is sorted once and the two sorted runs
    are merged by index arithmetic, so both CDFs come from one cumulative count instead of
    searches. u's values go before equal values of v, so the last element of every run of equal
    values carries both CDFs at that value (the other elements of a run have width zero).
    """
    u, v = np.sort(u), np.sort(v)
    m, n = len(u), len(v)
    at = np.searchsorted(v, u, side="left") + np.arange(m)  # u's places in the merged run
    from_u = np.zeros(m + n, dtype=bool)
    from_u[at] = True
    merged = np.empty(m + n)
    merged[at] = u
    merged[~from_u] = v
    u_count = np.cumsum(from_u[:-1])
    v_count = np.arange(1, m + n) - u_count
    return float(np.dot(np.abs(u_count / m - v_count / n), np.diff(merged)))


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    norm = max(float(np.std(reference)), 0.001)
    return wasserstein_1d(reference, current) / norm


def numeric_counts(values: np.ndarray) -> dict[float, int]:
    uniques, counts = np.unique(values, return_counts=True)
    return dict(zip(uniques.tolist(), counts.tolist(), strict=True))


def binned_shares(
    reference: np.ndarray, current: np.ndarray, fill_zeroes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sturges bins over both samples (as Evidently bins numeric columns with > 20 values)."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    return (_fill_zeroes(ref), _fill_zeroes(cur)) if fill_zeroes else (ref, cur)


# -- categorical columns (value counts) -----------------------------------------------------------

def aligned_counts(reference: Counts, current: Counts) -> tuple[list[Any], np.ndarray, np.ndarray]:
    keys = list(dict.fromkeys([*reference, *current]))
    ref = np.array([reference.get(k, 0) for k in keys], dtype=float)
    cur = np.array([current.get(k, 0) for k in keys], dtype=float)
    return keys, ref, cur


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's fix for empty bins, so log ratios stay finite."""
    shares = shares.copy()
    smallest = shares[shares != 0].min()
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return shares


def chisquare_pvalue(reference: Counts, current: Counts) -> float:
    """Two-sample contingency test: both samples are random, neither is taken as exact.

    (Evidently's goodness-of-fit form treats reference shares as the truth and flags stable
    20-level columns in most runs at 500-1,000 rows.)
    """
    _, ref, cur = aligned_counts(reference, current)
    keep = (ref + cur) > 0
    table = np.vstack([ref[keep], cur[keep]])
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def z_pvalue(reference: Counts, current: Counts) -> float:
    """Two-proportion z-test on the first (sorted) value, as Evidently does for binary columns."""
    keys = sorted(dict.fromkeys([*reference, *current]), key=str)
    n1, n2 = sum(reference.values()), sum(current.values())
    if len(keys) == 1:
        return 1.0
    p1 = 1 - reference.get(keys[0], 0) / n1
    p2 = 1 - current.get(keys[0], 0) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denom = np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    if denom == 0:
        return 1.0
    return float(2 * (1 - stats.norm.cdf(abs((p1 - p2) / denom))))


def jensenshannon_counts(reference: Counts, current: Counts) -> float:
    _, ref, cur = aligned_counts(reference, current)
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))


def psi_from_shares(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def psi_counts(reference: Counts, current: Counts) -> float:
    _, ref, cur = aligned_counts(reference, current)
    return psi_from_shares(_fill_zeroes(ref / ref.sum()), _fill_zeroes(cur / cur.sum()))
