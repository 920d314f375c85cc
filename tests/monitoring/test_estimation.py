"""Calibration at training and the label-free estimate (CBPE) on traffic whose labels are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.ml.calibration import Calibration, expected_calibration_error
from app.ml.features import FEATURE_NAMES, LEVELS, TARGET
from app.ml.synthetic import generate
from app.monitoring.estimation import GRID, Cells, calibrated_in_level_order, estimate
from app.serving.loaded_model import LoadedModel
from tests.support.models import load_production


@pytest.fixture(scope="module")
def production(registry_dir: Path) -> LoadedModel:
    return load_production(registry_dir)


def _window(model: LoadedModel, seed: int, shift: tuple[str, ...] = ()) -> tuple[float, float]:
    """(true accuracy, estimated accuracy) of 4,000 generated rows, labels never shown to the
    estimate; probabilities on the estimation grid, as the database returns them."""
    df = generate(4000, seed=seed, shift=shift)
    raw = model.predict_proba(df[list(FEATURE_NAMES)])  # LEVELS order
    true = float((np.asarray(LEVELS)[raw.argmax(axis=1)] == df[TARGET].to_numpy()).mean())
    assert model.calibration is not None
    gridded = np.round(raw * GRID) / GRID
    calibrated = calibrated_in_level_order(model.calibration, gridded)
    found = estimate(Cells(gridded.argmax(axis=1), calibrated, np.ones(len(df), np.int64)))
    assert found is not None and found.rows == len(df)
    low, high = found.accuracy_interval
    assert low <= found.accuracy <= high
    return true, found.accuracy


def test_the_version_carries_calibration_fitted_on_held_out_rows(production):
    calibration = production.calibration
    assert calibration is not None and calibration.classes == tuple(production.fitted().classes_)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    # Judged on fresh rows: calibrated confidence is closer to the share that is right.
    df = generate(3000, seed=11)
    raw = production.fitted().predict_proba(df[list(FEATURE_NAMES)])
    calibrated = calibration.apply(raw)
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    classes = calibration.classes
    assert (expected_calibration_error(calibrated, df[TARGET], classes)
            < expected_calibration_error(raw, df[TARGET], classes))


def test_the_estimate_tracks_true_accuracy_without_labels(production):
    for seed in (21, 22):
        true, estimated = _window(production, seed)
        assert abs(estimated - true) <= 0.03, (seed, true, estimated)
    base_true, base_estimated = _window(production, 23)
    for shift in (("trend_score", "scarcity_index"), ("horizon_years", "trend_score", "hiring_difficulty")):
        true, estimated = _window(production, 23, shift)
        assert abs(estimated - true) <= 0.08, (shift, true, estimated)
        assert np.sign(estimated - base_estimated) == np.sign(true - base_true), (shift, true, estimated)


def test_expected_confusion_adds_up_and_f1_is_bounded():
    calibrated = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    found = estimate(Cells(np.array([0, 1, 2]), calibrated, np.array([10, 20, 30])))
    assert found is not None
    total = sum(sum(row.values()) for row in found.expected_confusion.values())
    assert total == pytest.approx(60)
    assert found.accuracy == pytest.approx((7 + 12 + 18) / 60)
    assert 0 <= found.f1_macro_interval[0] <= found.f1_macro <= found.f1_macro_interval[1] <= 1
    assert estimate(Cells.empty()) is None
