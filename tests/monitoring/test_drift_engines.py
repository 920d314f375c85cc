"""The native drift engine against Evidently, and the statistics behind it (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as sps

from app.ml.features import FEATURE_NAMES, TARGET
from app.ml.synthetic import generate
from app.monitoring import drift_tests as stats
from app.monitoring import evidently_engine
from app.monitoring.data import LEVEL_COLUMN, Reference, Window
from app.monitoring.native import run_native

SHIFTED = ["trend_score", "training_requests", "avg_salary_k"]


def window_of(frame: pd.DataFrame) -> Window:
    table = pa.Table.from_pandas(frame[list(FEATURE_NAMES)], preserve_index=False).append_column(
        LEVEL_COLUMN, pa.array(frame[TARGET].tolist(), pa.string())
    )
    return Window(table, None, None, len(frame), False, 10**7)


def reference_of(rows: int, seed: int = 1) -> Reference:
    frame = generate(rows, seed=seed)
    return Reference.build("m", "1", frame, frame[TARGET].tolist())


@pytest.mark.parametrize("reference_rows", [1000, 5000])
def test_native_and_evidently_agree_where_they_run_the_same_test(reference_rows):
    reference = reference_of(reference_rows)
    window = window_of(generate(3000, seed=2, shift=SHIFTED))
    native = run_native(reference, window, 0.5)
    evidently, _ = evidently_engine.run_evidently(reference, window, 0.5)
    assert [f.feature for f in native.features] == list(FEATURE_NAMES)
    assert [f.feature for f in evidently.features] == list(FEATURE_NAMES)
    same_test = 0
    for ours, theirs in zip(native.features, evidently.features, strict=True):
        assert ours.method == theirs.method, ours.feature  # the same default test selection
        if ours.method == "chisquare":
            continue  # deliberately different: two-sample contingency vs goodness-of-fit
        same_test += 1
        assert ours.drifted == theirs.drifted, ours.feature
        assert ours.threshold == theirs.threshold
        assert ours.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-300), ours.feature
    assert same_test == (8 if reference_rows == 1000 else 12)
    assert native.drifted_features == SHIFTED
    if reference_rows == 1000:
        assert {f.method for f in native.features} == {"ks", "chisquare"}
    else:
        assert {f.method for f in native.features} == {"wasserstein", "jensenshannon"}
        assert evidently.drifted_features == SHIFTED


def test_share_rule_decides_dataset_drift():
    reference = reference_of(5000)
    window = window_of(generate(2000, seed=3, shift=SHIFTED))
    assert run_native(reference, window, 0.5).dataset_drift is False  # 3/12 < 0.5
    at_quarter = run_native(reference, window, 0.25)
    assert at_quarter.drift_share == 0.25 and at_quarter.dataset_drift is True


def test_method_and_threshold_overrides_per_feature():
    reference = reference_of(5000)
    window = window_of(generate(2000, seed=3, shift=SHIFTED))
    result = run_native(reference, window, 0.5, methods={"trend_score": "psi", "job_role": "psi"},
                        thresholds={"avg_salary_k": 5.0})
    by_name = {f.feature: f for f in result.features}
    assert by_name["trend_score"].method == "psi" and by_name["trend_score"].drifted
    assert by_name["job_role"].method == "psi" and not by_name["job_role"].drifted
    assert by_name["avg_salary_k"].threshold == 5.0 and not by_name["avg_salary_k"].drifted
    assert result.drifted_features == ["trend_score", "training_requests"]


def test_psi_and_z_test_match_evidently_formulas():
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 3000), rng.normal(0.3, 1, 4000)
    from app.monitoring.native import _numeric_score

    assert _numeric_score("psi", ref, cur) == pytest.approx(
        _psi(pd.Series(ref), pd.Series(cur), ColumnType.Numerical, 0.1)[0], rel=1e-9)
    ref_b = pd.Series(rng.choice(["yes", "no"], 800, p=[0.3, 0.7]))
    cur_b = pd.Series(rng.choice(["yes", "no"], 900, p=[0.4, 0.6]))
    theirs = _z_stat_test(ref_b, cur_b, ColumnType.Categorical, 0.05)[0]
    ours = stats.z_pvalue(ref_b.value_counts().to_dict(), cur_b.value_counts().to_dict())
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert stats.default_method("categorical", 800, 2) == "z"
    assert stats.default_method("numeric", 800, 4) == "chisquare"
    assert stats.default_method("numeric", 5000, 4) == "jensenshannon"


def test_contingency_chi_square_keeps_its_false_positive_rate():
    """A stable 20-level column at 500-1,000 rows: the two-sample test flags about 5% of runs,
    the goodness-of-fit form (reference shares taken as exact) far more."""
    rng = np.random.default_rng(11)
    levels = [f"v{i}" for i in range(20)]
    p = rng.dirichlet(np.full(20, 5.0))
    runs, ours, goodness_of_fit = 300, 0, 0
    for _ in range(runs):
        ref = dict(zip(levels, rng.multinomial(500, p), strict=True))
        cur = dict(zip(levels, rng.multinomial(1000, p), strict=True))
        ours += stats.chisquare_pvalue(ref, cur) < 0.05
        _, r, c = stats.aligned_counts(ref, cur)
        keep = r > 0
        goodness_of_fit += sps.chisquare(c[keep], r[keep] * c.sum() / r[keep].sum()).pvalue < 0.05
    assert ours / runs < 0.10
    assert goodness_of_fit / runs > 0.30


def test_unseen_categories_and_prediction_drift_are_reported():
    reference = reference_of(2000)
    frame = generate(1000, seed=9)
    frame.loc[:99, "skill"] = "Quantum Basket Weaving"
    frame.loc[50:149, "job_role"] = "Astronaut"
    frame[TARGET] = "HIGH"  # every prediction HIGH: the predicted-level distribution drifted
    result = run_native(reference, window_of(frame), 0.5)
    unseen = result.unseen_categories
    assert unseen.by_feature["skill"].count == 100 and unseen.by_feature["job_role"].count == 100
    assert unseen.rows_with_unseen == 150 and unseen.rate == pytest.approx(0.15)
    assert result.to_dict()["unseen_categories"]["by_feature"]["skill"] == {"count": 100, "rate": 0.1}
    assert result.prediction_drift.drifted and result.prediction_drift.method == "jensenshannon"
    assert result.prediction_distribution["current"] == {"HIGH": 1.0}


def test_ks_is_scipys_beyond_its_exact_sizes_on_ties_and_continuous_samples():
    rng = np.random.default_rng(4)
    cases = [(rng.beta(5, 2, 500).round(2), rng.beta(5, 2.4, 20_000).round(2)),
             (rng.uniform(size=12_000), rng.uniform(0.01, 1.0, size=15_000)),
             (rng.integers(1, 11, 30_000).astype(float), rng.integers(0, 4, 300).astype(float)),
             (rng.normal(size=11_000), np.array([0.0])), (np.ones(20_000), np.ones(3))]
    for u, v in cases:
        expected = sps.ks_2samp(u, v)
        assert stats.ks_statistic(u, v) == expected.statistic
        assert stats.ks_pvalue(u, v) == expected.pvalue
    small = (rng.normal(size=40), rng.normal(0.5, size=300))  # scipy's exact test: passed to it
    assert stats.ks_pvalue(*small) == sps.ks_2samp(*small).pvalue


def test_wasserstein_is_scipys_on_ties_constants_and_continuous_samples():
    rng = np.random.default_rng(3)
    cases = [(rng.normal(size=40), rng.normal(0.5, 2.0, size=300)),
             (rng.integers(0, 4, 30).astype(float), rng.integers(0, 6, 200).astype(float)),
             (np.round(rng.normal(size=50), 1), np.round(rng.normal(size=500), 1)),
             (np.ones(5), np.ones(9)), (np.array([0.0]), np.array([2.0, 2.0])),
             (rng.normal(size=300), rng.normal(size=40)),  # the larger sample first
             (rng.normal(90, 20, 2000).round(2), rng.normal(95, 25, 50_000).round(2)),
             (rng.normal(1e6, 1, 500), rng.normal(1e6, 2, 5000))]  # far from zero
    for u, v in cases:
        assert stats.wasserstein_1d(u, v) == pytest.approx(sps.wasserstein_distance(u, v),
                                                           rel=1e-12, abs=1e-15)
