"""The compiled predictor (ONNX Runtime) and the fast transform, on the real trained test model."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.config import TrainingSettings
from app.ml.features import FEATURE_NAMES
from app.ml.pipeline import build_pipeline
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry, VersionRef
from app.serving.bundle import manifest_file
from app.serving.compiled import COMPILED_DIR, compiled_file, compiled_name
from app.serving.fast_transform import FastTransform
from app.serving.loaded_model import LoadedModel, PredictorOptions, load_from_path, to_frame
from app.training.train import register_version
from tests.serving.test_batching import varied_rows
from tests.support.running_app import RunningApp
from tests.support.settings import TEST_TRAINING, make_settings

TOLERANCE = PredictorOptions().parity_tolerance


@pytest.fixture(scope="module")
def version(registry_dir: Path) -> tuple[VersionRef, Path]:
    settings = make_settings(registry_dir)
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    ref = registry.resolve(settings.model.name, "production")
    return ref, registry.download(ref)


@pytest.fixture(scope="module")
def model(version: tuple[VersionRef, Path]) -> LoadedModel:
    loaded = load_from_path(*version, PredictorOptions())
    loaded.compile_pending()  # built now if it was deferred (the slot does it in the background)
    return loaded


@pytest.fixture
def private_copy(version: tuple[VersionRef, Path], tmp_path: Path) -> Path:
    """The cached version copied to a cache of this test's own, without a compiled forest."""
    ref, model_dir = version
    version_dir = next(p for p in (model_dir, *model_dir.parents) if p.name == ref.version)
    copy = tmp_path / "cache" / ref.name / ref.version
    shutil.copytree(version_dir, copy, ignore=shutil.ignore_patterns(COMPILED_DIR))
    return copy / model_dir.relative_to(version_dir)


def pipeline_proba(model: LoadedModel, frame) -> np.ndarray:
    return model._in_level_order(model.fitted().predict_proba(frame))


def assert_parity(model: LoadedModel, proba: np.ndarray, expected: np.ndarray) -> None:
    assert model.levels_of(proba) == model.levels_of(expected)
    assert np.abs(proba - expected).max() <= TOLERANCE


def test_onnx_path_matches_the_pipeline_on_rows_and_frames(model: LoadedModel):
    assert model.predictor == "onnx", model.predictor_note
    assert model.reference is not None
    for rows in (model.reference[list(FEATURE_NAMES)].to_dict("records"), varied_rows(300, seed=21)):
        frame = to_frame(rows)
        expected = pipeline_proba(model, frame)
        assert_parity(model, model.predict_rows(rows), expected)
        assert_parity(model, model.predict_proba(frame), expected)
        for row in rows[:10]:  # single rows, the hot case
            assert_parity(model, model.predict_rows([row]), pipeline_proba(model, to_frame([row])))


def test_fast_transform_equals_the_fitted_transform(model: LoadedModel):
    preprocess = model.fitted().steps[0][1]
    fitted = FastTransform.of(preprocess)
    # As a serving bundle carries it: through JSON and back, the same transform.
    carried = FastTransform.from_dict(json.loads(json.dumps(fitted.to_dict())))
    rows = varied_rows(400, seed=5)  # unknown categories and bound values mixed in
    expected = preprocess.transform(to_frame(rows)).toarray().astype(np.float32)
    for fast in (fitted, carried):
        assert np.array_equal(fast.transform_rows(rows), expected)
        assert np.array_equal(fast.transform_frame(to_frame(rows)), expected)
    fast = carried
    # Small calls take a plain-Python path: the same values.
    assert np.array_equal(np.vstack([fast.transform_rows(rows[i:i + 3]) for i in range(0, 60, 3)]),
                          expected[:60])


def test_fast_transform_refuses_unknown_categories_when_the_encoder_does():
    data = generate(300, seed=2)
    pipeline = build_pipeline("logistic_regression").fit(data[list(FEATURE_NAMES)], data["future_need_level"])
    preprocess = pipeline.steps[0][1]
    preprocess.named_transformers_["categorical"].handle_unknown = "error"
    row = dict(data[list(FEATURE_NAMES)].iloc[0], skill="Unseen")
    with pytest.raises(ValueError):
        preprocess.transform(to_frame([row]))
    with pytest.raises(ValueError):
        FastTransform.of(preprocess).transform_rows([row])
    with pytest.raises(ValueError):
        FastTransform.from_dict(FastTransform.of(preprocess).to_dict()).transform_rows([row])


def test_large_batches_are_the_pipeline_exactly(model: LoadedModel):
    rows = generate(20_000, seed=8, with_label=False)[list(FEATURE_NAMES)].to_dict("records")
    frame = to_frame(rows)
    expected = pipeline_proba(model, frame)
    # Above large_batch_rows the forest's own trees are summed (on every core): the same floats.
    assert np.array_equal(model.predict_rows(rows), expected)
    assert np.array_equal(model.predict_proba(frame), expected)


def test_compiled_file_is_cached_reused_and_replaced_when_unreadable(
    version: tuple[VersionRef, Path], private_copy: Path, caplog
):
    ref = version[0]
    target = compiled_file(private_copy)
    assert target is not None and target.suffix == ".ort"
    target.parent.mkdir(parents=True)
    stale = target.with_name("forest-skl2onnx1.0-ml3.onnx")  # an older converter's file
    stale.write_bytes(b"an earlier format")
    # Not cached yet: the load serves lean and defers the conversion, which then switches it.
    first = load_from_path(ref, private_copy, PredictorOptions())
    assert first.predictor == "lean" and first.pending_compile is not None
    assert "background" in first.predictor_note
    assert first.compile_pending()
    assert not stale.exists()
    assert first.predictor == "onnx"
    assert "converted in" in first.predictor_note
    (compiled,) = (p for p in private_copy.parent.rglob("*.ort") if COMPILED_DIR in p.parts)
    written = compiled.stat().st_mtime_ns

    # Cached, with the serving bundle the first load wrote: onnx at once, the pipeline not read.
    second = load_from_path(ref, private_copy, PredictorOptions())
    assert second.predictor == "onnx" and second.pending_compile is None and second.from_bundle
    assert "the serving bundle in the model cache" in second.predictor_note
    assert compiled.stat().st_mtime_ns == written

    compiled.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING, logger="app.serving.compiled"):
        third = load_from_path(ref, private_copy, PredictorOptions())
    assert "converting again" in caplog.text
    assert third.predictor == "onnx" and "converted in" in third.predictor_note
    rows = varied_rows(50, seed=3)
    assert np.array_equal(third.predict_rows(rows), second.predict_rows(rows))


def test_a_cached_version_serves_from_its_bundle_and_reads_the_trees_only_when_needed(
    version: tuple[VersionRef, Path], model: LoadedModel
):
    ref, model_dir = version
    compiled = compiled_file(model_dir)
    assert compiled is not None and manifest_file(compiled).exists()  # written by the first load
    again = load_from_path(ref, model_dir, PredictorOptions())
    assert again.predictor == "onnx" and again.from_bundle, again.predictor_note
    rows = varied_rows(200, seed=5)
    expected = pipeline_proba(model, to_frame(rows))
    assert_parity(again, again.predict_rows(rows), expected)
    assert again.levels_of(again.predict_rows(rows[:1])) == model.levels_of(expected[:1])
    assert again.from_bundle  # calls the compiled forest takes never read the pipeline
    big = varied_rows(1500, seed=6)  # over large_batch_rows: the trees, read now, exactly
    assert np.array_equal(again.predict_rows(big), pipeline_proba(model, to_frame(big)))
    assert not again.from_bundle and again.predictor == "onnx"


def test_a_bundle_that_does_not_reproduce_the_pipeline_is_not_used(
    version: tuple[VersionRef, Path], model: LoadedModel, private_copy: Path, caplog
):
    ref, model_dir = version
    compiled = compiled_file(model_dir)
    assert compiled is not None and model.predictor == "onnx"
    shutil.copytree(compiled.parent, compiled_file(private_copy).parent)  # no conversion here
    manifest = manifest_file(compiled_file(private_copy))
    doc = json.loads(manifest.read_text())
    doc["expected"][0] = [1.0, 0.0, 0.0] if doc["expected"][0][0] < 0.5 else [0.0, 1.0, 0.0]
    manifest.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="app.serving.loaded_model"):
        loaded = load_from_path(ref, private_copy, PredictorOptions())
    assert "serving bundle not used: reference rows" in caplog.text
    # The long way: the pipeline read and checked against, which writes the bundle anew.
    assert loaded.predictor == "onnx" and not loaded.from_bundle
    assert json.loads(manifest.read_text())["expected"][0] != doc["expected"][0]

    sample = private_copy / "extra_files" / "reference.parquet"  # now not the sample checked on
    pd.read_parquet(sample).iloc[1:].to_parquet(sample)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.serving.bundle"):
        assert load_from_path(ref, private_copy, PredictorOptions()) is not None
    assert "made with other files" in caplog.text


def test_a_version_logged_with_its_compiled_forest_serves_from_its_artifacts(tmp_path: Path):
    small = {"rows": 2000, "n_estimators": 20, "compile_forest": True}
    training = TrainingSettings(**(TEST_TRAINING | small))
    settings = make_settings(tmp_path, training=training)
    settings.ensure_dirs()
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    result = register_version(settings, registry)
    ref = registry.get_version(settings.model.name, result.version)
    path = registry.download(ref)
    logged = path / "extra_files" / compiled_name()
    assert logged.exists() and manifest_file(logged).exists()
    model = load_from_path(ref, path, PredictorOptions())
    assert model.from_bundle and "the version's artifacts" in model.predictor_note, model.predictor_note
    cached = compiled_file(path)
    assert cached is not None and not cached.exists()  # nothing converted on this host
    rows = varied_rows(100, seed=12)
    assert_parity(model, model.predict_rows(rows), pipeline_proba(model, to_frame(rows)))


def test_a_worker_serving_from_the_bundle_imports_no_scikit_learn(
    registry_dir: Path, model: LoadedModel
):
    """What a serving worker imports (app.main), then a version loaded from its bundle and used."""
    script = f"""
import json, sys
from pathlib import Path
import app.main
from app.ml.features import FEATURE_NAMES
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry
from app.serving.loaded_model import PredictorOptions, load_from_path
from app.config import TrainingSettings
from app.training.train import register_version
from tests.support.settings import TEST_TRAINING, make_settings
s = make_settings(Path({str(registry_dir)!r}))
registry = ModelRegistry(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri,
                         artifact_root=s.artifact_root, cache_dir=s.model_cache_dir)
ref = registry.resolve(s.model.name, "production")
model = load_from_path(ref, registry.download(ref), PredictorOptions())
proba = model.predict_rows(generate(100, seed=9, with_label=False)[list(FEATURE_NAMES)].to_dict("records"))
print(json.dumps({{"bundle": model.from_bundle, "sklearn": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("sklearn", "skops"))[:5], "rows": len(proba)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"bundle": True, "sklearn": [], "rows": 100}


def test_a_failed_parity_check_falls_back_to_lean(version: tuple[VersionRef, Path], model: LoadedModel,
                                                  caplog):
    assert model.predictor == "onnx"  # the compiled file is in the cache now: no conversion below
    with caplog.at_level(logging.WARNING, logger="app.serving.loaded_model"):
        strict = load_from_path(*version, PredictorOptions(parity_tolerance=0.0))
    assert strict.predictor == "lean"
    assert "fails the parity check" in caplog.text and "fails the parity check" in strict.predictor_note
    rows = varied_rows(100, seed=4)
    assert np.array_equal(strict.predict_rows(rows), pipeline_proba(strict, to_frame(rows)))


def test_the_setting_caps_the_path(version: tuple[VersionRef, Path]):
    lean = load_from_path(*version, PredictorOptions(predictor="lean"))
    pipeline = load_from_path(*version, PredictorOptions(predictor="pipeline"))
    assert (lean.predictor, pipeline.predictor) == ("lean", "pipeline")
    rows = varied_rows(60, seed=6)
    assert np.array_equal(lean.predict_rows(rows), pipeline.predict_rows(rows))


def test_a_model_outside_the_cache_is_not_compiled(version: tuple[VersionRef, Path], tmp_path: Path):
    ref, model_dir = version
    outside = shutil.copytree(model_dir, tmp_path / "dry-run-model")
    model = load_from_path(ref, outside, PredictorOptions())
    assert model.predictor == "lean" and "not in the model cache" in model.predictor_note
    assert not model.compile_pending()
    assert not list(tmp_path.rglob("*.ort"))


def test_no_reference_sample_means_no_compiled_path(version: tuple[VersionRef, Path], model: LoadedModel):
    bare = LoadedModel(ref=model.ref, pipeline=model.fitted(), signature=None, reference=None)
    bare.enable_predictor(PredictorOptions(), version[1])
    assert bare.predictor == "lean" and "no reference sample" in bare.predictor_note


async def test_ready_and_metrics_name_the_predictor(settings):
    async with RunningApp(settings) as client:
        # Ready at once on the lean path if this cache has no compiled forest yet; the slot builds
        # it in the background and switches.
        ready = (await client.get("/health/ready")).json()
        assert ready["model"]["predictor"] in ("lean", "onnx")
        for _ in range(600):
            if (await client.get("/health/ready")).json()["model"]["predictor"] == "onnx":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the compiled forest was not switched in")
        metrics = (await client.get("/metrics")).text
    line = f'fs_model_predictor{{model_name="{settings.model.name}",model_version="1",predictor="onnx"}} 1.0'
    assert line in metrics
