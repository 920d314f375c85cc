"""Training: fit -> MLflow run -> registered version with its semver -> the first becomes Production.

``train(components)`` is the entry point: it runs the blocking part (scikit-learn, the MLflow
client) in a worker thread, then moves the alias of a first version through the lifecycle
service (one audited move) and records the run in ``training_run``. Its components come from
``app.container.build`` (the CLI's ``train`` and ``bootstrap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import mlflow
import mlflow.sklearn
import pandas as pd
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.engine import create_sessionmaker
from app.db.tables import TrainingRun
from app.lifecycle.service import LifecycleService
from app.lifecycle.versioning import ChangeType, assign_semver
from app.ml.features import TARGET
from app.registry.client import ModelRegistry
from app.serving.loaded_model import REFERENCE_FILE, PredictorOptions
from app.training.fit import (
    STAGES,
    FittedModel,
    Progress,
    fit_and_evaluate,
    load_data,
    model_format,
    no_progress,
)

log = logging.getLogger(__name__)

__all__ = ["STAGES", "TRAINING_EXPERIMENT", "TrainingComponents", "TrainingResult", "load_data",
           "register_version", "train"]

TRAINING_EXPERIMENT = "model-training"
ACTOR = "training"


class TrainingComponents(Protocol):
    """What training needs; ``app.container.Container`` has all of it."""

    settings: Settings
    registry: ModelRegistry
    engine: AsyncEngine
    lifecycle: LifecycleService


@dataclass
class TrainingResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    params: dict[str, object]
    rows: int
    promoted: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    semver: str | None = None
    change_type: str | None = None


async def train(
    components: TrainingComponents, *, data: pd.DataFrame | None = None,
    rows: int | None = None, seed: int | None = None, progress: Progress = no_progress,
    extra_tags: dict[str, str] | None = None, bump: ChangeType | None = None,
) -> TrainingResult:
    """Train and register off the event loop; a first version becomes Production (audited);
    the run is recorded in the database.

    ``components``: the container (``app.container.build(settings)``), which the caller builds:
    training sits below it. ``bump`` ("major", "minor", "patch") overrides the change type
    detected against Production.
    """
    settings = components.settings
    result = await asyncio.to_thread(register_version, settings, components.registry, data=data,
                                     rows=rows, seed=seed, progress=progress,
                                     extra_tags=extra_tags, bump=bump)
    result.promoted = await components.lifecycle.adopt_first(
        result.model_name, result.version, actor=ACTOR, reason="first version of the model",
        detail=f"semver {result.semver}")
    if result.promoted:
        log.info("made version %s of %s the %s version", result.version, result.model_name,
                 settings.model.alias)
    await record_run(components.engine, result)
    return result


def register_version(
    settings: Settings, registry: ModelRegistry, *, data: pd.DataFrame | None = None,
    rows: int | None = None, seed: int | None = None, progress: Progress = no_progress,
    extra_tags: dict[str, str] | None = None, bump: ChangeType | None = None,
) -> TrainingResult:
    """Fit, log everything to an MLflow run, register a version with its semver (blocking).
    Moves no alias: that is the lifecycle service's (``train``)."""
    experiment_ids = registry.ensure_experiments()
    fitted = fit_and_evaluate(settings, data, rows, seed, progress)
    progress("log")
    name = settings.model.name
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        # Compiled whatever path this process serves by: each serving worker decides for itself.
        compile_with = (replace(PredictorOptions.of(settings.model), predictor="onnx")
                        if settings.training.compile_forest else None)
        run_id, version = _log_and_register(fitted, name, experiment_ids[TRAINING_EXPERIMENT],
                                            extra_tags, progress, compile_with)
    for key, value in fitted.metrics.items():
        if not key.startswith("baseline"):
            registry.client.set_model_version_tag(name, version, f"metric.{key}", f"{value:.6f}")
    record = assign_semver(registry, name, settings.model.alias, version,
                           fitted.record(run_id, settings.training.algorithm), bump=bump)
    return TrainingResult(
        run_id=run_id, model_name=name, version=version, metrics=fitted.metrics,
        params=fitted.params, rows=len(fitted.data), tags={"run_id": run_id, **(extra_tags or {})},
        semver=record.semver, change_type=record.change_type,
    )


def _log_and_register(fitted: FittedModel, name: str, experiment_id: str,
                      extra_tags: dict[str, str] | None, progress: Progress,
                      compile_with: PredictorOptions | None) -> tuple[str, str]:
    """One MLflow run with params, metrics, figures, the reference sample and the model (with
    its compiled forest and serving bundle when ``compile_with``), which is registered as a new
    version of ``name``. Returns (run id, version)."""
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(fitted.params)
        mlflow.log_metrics(fitted.metrics)
        mlflow.set_tags({"model_name": name, **(extra_tags or {})})
        mlflow.log_figure(fitted.confusion_matrix(), "evaluation/confusion_matrix.png")
        importances = fitted.feature_importances()
        if importances:
            mlflow.log_dict(importances, "evaluation/feature_importances.json")
        if fitted.calibration is not None:  # also inside the model, beside the reference sample
            mlflow.log_dict(fitted.calibration.to_dict(), "calibration/calibration.json")
        mlflow.log_dict(
            {"class_distribution": fitted.data[TARGET].value_counts(normalize=True).round(4).to_dict()},
            "data/summary.json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            reference_path = Path(tmp) / REFERENCE_FILE
            if compile_with is not None:
                progress("compile")
            stored_as = model_format(fitted, reference_path, compile_with)
            mlflow.log_artifact(str(reference_path), artifact_path="reference")
            progress("register")
            info = mlflow.sklearn.log_model(fitted.model, name="model", registered_model_name=name,
                                            await_registration_for=60, **stored_as)
        return run.info.run_id, str(info.registered_model_version)


# MLflow's fluent API (``log_model`` has no client argument) reads process-global URIs, and
# ``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI to the environment. This is the one place
# that touches either: serialized, and put back afterwards, so no later ``Settings()`` in this
# process (a test, the CLI) inherits a training's registry.
_MLFLOW_GLOBALS = threading.Lock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def _mlflow_uris(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at our stores for the body, then put back what was there."""
    with _MLFLOW_GLOBALS:
        saved = {k: os.environ.get(k) for k in _URI_VARIABLES}
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)
        try:
            yield
        finally:
            # None resets MLflow to its default, as it was (its stubs say str only).
            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
            mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


async def record_run(engine: AsyncEngine, result: TrainingResult) -> None:
    """The ``training_run`` row of a finished training."""
    async with create_sessionmaker(engine)() as session, session.begin():
        session.add(
            TrainingRun(
                run_id=result.run_id, experiment=TRAINING_EXPERIMENT,
                model_name=result.model_name, model_version=result.version,
                algorithm=str(result.params["algorithm"]), rows=result.rows,
                params=json.loads(json.dumps(result.params, default=str)),
                metrics=result.metrics, status="FINISHED",
            )
        )
