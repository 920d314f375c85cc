"""The TreeSHAP engine against shap itself, on real rows of the really trained test model; the
HR-feature grouping, the document and the refusal of a model that is not a forest."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import shap
from sklearn.linear_model import LogisticRegression

from app.api.errors import status_for
from app.errors import ExplanationUnavailable
from app.explanations import document
from app.explanations.engine import ExplanationEngine
from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS
from app.ml.pipeline import build_pipeline
from app.ml.synthetic import generate
from app.registry.client import VersionRef
from app.serving.loaded_model import LoadedModel, to_frame
from tests.support.models import load_production

ROWS = 20


@pytest.fixture(scope="module")
def model(registry_dir: Path) -> LoadedModel:
    return load_production(registry_dir)


@pytest.fixture(scope="module")
def engine(model: LoadedModel) -> ExplanationEngine:
    return ExplanationEngine(model)


@pytest.fixture(scope="module")
def rows(model: LoadedModel) -> list[dict]:
    assert model.reference is not None
    return model.reference.sample(ROWS, random_state=3)[list(FEATURE_NAMES)].to_dict("records")


def test_equal_to_shap_per_column_and_additive(model, engine, rows) -> None:
    x, explained = engine.explain_rows(rows)
    forest = model.fitted().steps[1][1]
    reference = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    order = [list(forest.classes_).index(level) for level in LEVELS]
    expected = np.asarray(reference.shap_values(x))[..., order]  # rows x columns x classes
    assert expected.shape == explained.columns.shape
    assert np.abs(explained.columns - expected).max() <= 1e-6
    assert np.abs(explained.base - np.asarray(reference.expected_value)[order]).max() <= 1e-6
    # Additive against the pipeline itself (float64), per class.
    proba = model.fitted().predict_proba(to_frame(rows))[:, order]
    assert np.abs(explained.base + explained.columns.sum(axis=1) - proba).max() <= 1e-6
    assert np.abs(explained.base + explained.features.sum(axis=1) - proba).max() <= 1e-6


def test_one_hot_columns_are_summed_back_to_their_feature(engine, rows) -> None:
    _, explained = engine.explain_rows(rows[:3])
    assert engine.feature_names == list(FEATURE_NAMES)
    for g, (name, columns) in enumerate(engine.groups):
        expected = explained.columns[:, columns, :].sum(axis=1)
        assert np.allclose(explained.features[:, g, :], expected, atol=0, rtol=1e-12)
        assert (len(columns) > 1) == (name in CATEGORICAL)


def test_document_is_ordered_directed_and_summarised(engine, rows) -> None:
    _, explained = engine.explain_rows(rows[:1])
    level = LEVELS[int(np.argmax(explained.proba[0]))]
    doc = document.build(
        prediction_id=uuid.uuid4(), model=document.ModelOf("m", "7", "1.2.0", "run"),
        features=engine.feature_names, row=rows[0], level=level, base=explained.base,
        contributions=explained.features[0], model_proba=explained.proba[0],
        logged={lv: float(p) + 1e-4 for lv, p in zip(LEVELS, explained.proba[0], strict=True)},
    )
    assert [c["feature"] for c in doc["contributions"]] == list(FEATURE_NAMES)
    assert all(c["value"] == rows[0][c["feature"]] for c in doc["contributions"])
    sizes = [abs(f["contribution"]) for f in doc["top_factors"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == document.TOP_FACTORS
    assert all(f["direction"] == ("raises" if f["contribution"] > 0 else "lowers")
               for f in doc["top_factors"])
    first = doc["top_factors"][0]
    assert doc["summary"].startswith(f"{level} (p={doc['probabilities'][level]:.2f}) mainly because "
                                     f"{first['feature']} = ")
    for lv in LEVELS:
        total = doc["base_values"][lv] + sum(c["contributions"][lv] for c in doc["contributions"])
        assert abs(total - doc["probabilities"][lv]) <= 1e-6
    # Logged probabilities 1e-4 away (say, a float32 path): kept beside, and said so.
    assert doc["logged_probabilities"][level] == pytest.approx(doc["probabilities"][level] + 1e-4)
    assert "float32" in doc["note"]


def test_a_document_that_does_not_add_up_is_refused(engine, rows) -> None:
    _, explained = engine.explain_rows(rows[:1])
    broken = explained.features[0].copy()
    broken[0, 0] += 1e-5
    with pytest.raises(document.NotAdditive):
        document.build(
            prediction_id=uuid.uuid4(), model=document.ModelOf("m", "7", None, None),
            features=engine.feature_names, row=rows[0], level="LOW", base=explained.base,
            contributions=broken, model_proba=explained.proba[0], logged=None,
        )


def test_a_model_that_is_not_a_forest_is_unavailable_with_409() -> None:
    frame = generate(300, seed=5)
    pipeline = build_pipeline("logistic_regression")
    pipeline.fit(frame[list(FEATURE_NAMES)], frame["future_need_level"])
    assert isinstance(pipeline.steps[1][1], LogisticRegression)
    ref = VersionRef(name="m", version="3", run_id=None, source="")
    with pytest.raises(ExplanationUnavailable, match="random forest") as caught:
        ExplanationEngine(LoadedModel(ref=ref, pipeline=pipeline, signature=None, reference=None))
    assert status_for(caught.value) == 409 and caught.value.code == "explanation_unavailable"
