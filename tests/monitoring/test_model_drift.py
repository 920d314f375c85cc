"""Confidence drift: the predicted level's probability against the version's held-out rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.ml.features import FEATURE_NAMES
from app.ml.synthetic import generate
from app.monitoring.data import CONFIDENCE_COLUMN, Window
from app.monitoring.drift_service import build_reference
from app.monitoring.model_drift import confidence_drift, importance_drift, mean_abs_contribution
from app.serving.loaded_model import LoadedModel
from tests.support.models import load_production


@pytest.fixture(scope="module")
def production(registry_dir: Path) -> LoadedModel:
    return load_production(registry_dir)


def _window(model: LoadedModel, seed: int, shift: tuple[str, ...] = ()) -> Window:
    rows = generate(3000, seed=seed, shift=shift, with_label=False)
    confidence = model.predict_proba(rows[list(FEATURE_NAMES)]).max(axis=1)
    table = pa.table({CONFIDENCE_COLUMN: confidence})
    return Window(table=table, start=None, end=None, rows_in_window=len(rows), sampled=False,
                  max_rows=len(rows))


def test_confidence_drift_is_quiet_unshifted_and_flags_shifted_traffic(production):
    reference = build_reference(production)
    assert reference.confidence_source == "holdout" and len(reference.confidence) >= 100
    quiet = confidence_drift(reference, _window(production, 31), 0.01, 100)
    assert quiet is not None and not quiet.drifted, quiet
    shifted = confidence_drift(
        reference, _window(production, 31, ("trend_score", "scarcity_index", "hiring_difficulty")),
        0.01, 100)
    assert shifted is not None and shifted.drifted, shifted
    assert shifted.current_mean != quiet.current_mean
    # Too few confidences on a side: no verdict rather than one on noise.
    assert confidence_drift(reference, _window(production, 32), 0.01, 10**6) is None


def test_importance_is_listed_per_feature_and_quiet_on_unshifted_traffic(production):
    from app.explanations.engine import ExplanationEngine

    engine = ExplanationEngine(production)
    assert production.holdout is not None

    def importance(rows: list[dict]) -> np.ndarray:
        explained = engine.explain_rows(rows)[1]
        return mean_abs_contribution(explained.features, explained.proba)

    held_out = production.holdout.sample(200, random_state=0)[list(FEATURE_NAMES)]
    reference = importance(held_out.to_dict("records"))
    assert reference.shape == (len(FEATURE_NAMES),) and (reference > 0).all()
    unshifted = generate(200, seed=41, with_label=False)[list(FEATURE_NAMES)].to_dict("records")
    quiet = importance_drift(engine.feature_names, reference, importance(unshifted), 200, 200, 0.1,
                             "holdout")
    assert not quiet.drifted, quiet
    assert {f.feature for f in quiet.features} == set(FEATURE_NAMES)
    assert abs(sum(f.current_share for f in quiet.features) - 1) < 1e-5
    shifted_rows = generate(200, seed=41, shift=("trend_score", "scarcity_index", "hiring_difficulty"),
                            with_label=False)[list(FEATURE_NAMES)].to_dict("records")
    shifted = importance_drift(engine.feature_names, reference, importance(shifted_rows), 200, 200,
                               0.1, "holdout")
    moved = {f.feature: f.change for f in shifted.features}
    assert max(abs(v) for v in moved.values()) > max(abs(f.change) for f in quiet.features)
