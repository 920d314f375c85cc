"""The feature schema, the synthetic data generator and the baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.ml.evaluation import rules_baseline
from app.ml.features import BY_NAME, FEATURE_NAMES, LEVELS, TARGET, need_score
from app.ml.synthetic import generate


def test_generator_is_seeded_and_covers_the_schema():
    a, b, c = generate(2000, seed=1), generate(2000, seed=1), generate(2000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert list(a.columns) == [*FEATURE_NAMES, TARGET]
    for name in FEATURE_NAMES:
        feature = BY_NAME[name]
        if feature.is_categorical:
            assert set(a[name]) <= set(feature.vocabulary), name
        else:
            if feature.minimum is not None:
                assert a[name].min() >= feature.minimum, name
            if feature.maximum is not None:
                assert a[name].max() <= feature.maximum, name
            if feature.exclusive_minimum is not None:
                assert a[name].min() > feature.exclusive_minimum, name


def test_all_three_classes_are_well_represented():
    shares = generate(20_000, seed=3)[TARGET].value_counts(normalize=True)
    assert set(shares.index) == set(LEVELS)
    assert shares.min() > 0.2, shares.to_dict()


def test_labels_are_not_the_rules_formula():
    df = generate(5000, seed=4)
    agreement = (rules_baseline(df) == df[TARGET].to_numpy()).mean()
    assert agreement < 0.6  # a model must learn more than the old formula


def test_shift_moves_only_the_named_features():
    base = generate(5000, seed=5)
    drifted = generate(5000, seed=5, shift=["trend_score", "avg_salary_k"])
    assert drifted["trend_score"].mean() > base["trend_score"].mean() + 0.15
    assert drifted["avg_salary_k"].mean() > base["avg_salary_k"].mean() * 1.2
    assert np.isclose(drifted["internal_usage"].mean(), base["internal_usage"].mean(), atol=0.02)


def test_need_score_is_an_expected_need():
    assert need_score({"LOW": 1.0, "MEDIUM": 0.0, "HIGH": 0.0}) == 0.0
    assert need_score({"LOW": 0.0, "MEDIUM": 1.0, "HIGH": 0.0}) == 50.0
    assert need_score({"LOW": 0.2, "MEDIUM": 0.4, "HIGH": 0.4}) == pytest.approx(60.0)
