"""Training logs everything to a real MLflow registry and records the run."""

from __future__ import annotations

import asyncio

from mlflow import MlflowClient
from mlflow.models import Model
from sqlalchemy import select

from app.db.engine import create_engine
from app.db.tables import TrainingRun
from app.ml.features import FEATURE_NAMES
from app.registry.client import DEFAULT_EXPERIMENTS, ModelRegistry, VersionRef
from tests.support.settings import make_settings


def test_trained_model_beats_both_baselines_and_is_registered(registry_dir):
    settings = make_settings(registry_dir)
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    for name in DEFAULT_EXPERIMENTS:
        assert client.get_experiment_by_name(name) is not None, name

    version = client.get_model_version_by_alias(settings.model.name, "production")
    assert str(version.version) == "1"
    assert version.tags["semver"] == "1.0.0"
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    assert metrics["f1_macro"] > metrics["baseline_rules_f1_macro"] + 0.1
    assert metrics["f1_macro"] > metrics["baseline_majority_f1_macro"] + 0.1
    for key in ("accuracy", "f1_weighted", "precision_LOW", "recall_HIGH", "baseline_rules_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert run.data.params["algorithm"] == "random_forest"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/feature_importances.json"} <= artifacts
    reference = {a.path for a in client.list_artifacts(run.info.run_id, "reference")}
    assert reference == {"reference/reference.parquet"}

    # The registered model carries its signature, input example and reference sample.
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=None, cache_dir=registry_dir / "dl")
    path = registry.download(VersionRef.from_mlflow(version))
    logged = Model.load(str(path))
    assert logged.signature.inputs.input_names() == list(FEATURE_NAMES)
    assert logged.saved_input_example_info is not None
    assert (path / "extra_files" / "reference.parquet").exists()
    assert "skops" in (path / "MLmodel").read_text()


def test_training_run_is_recorded(registry_dir):
    settings = make_settings(registry_dir)

    async def rows():
        engine = create_engine(settings.db_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(select(TrainingRun.__table__))).mappings().all()
        finally:
            await engine.dispose()

    recorded = asyncio.run(rows())
    assert len(recorded) == 1
    assert recorded[0]["model_version"] == "1"
    assert recorded[0]["metrics"]["f1_macro"] > recorded[0]["metrics"]["baseline_rules_f1_macro"]
