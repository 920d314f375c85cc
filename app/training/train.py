"""The training pipeline: data -> fit -> held-out evaluation -> MLflow run -> registered version.

Blocking from end to end (scikit-learn, the MLflow client); ``train`` wraps it for async callers
and records the run in ``training_run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files, never to a screen

import matplotlib.pyplot as plt
import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.metrics import ConfusionMatrixDisplay

from app.config import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.db.tables import ModelPromotion, TrainingRun
from app.lifecycle.versioning import (
    VersionRecord,
    assign_semver,
    hyperparameters_of,
    signature_fingerprint,
)
from app.ml.evaluation import evaluate, split
from app.ml.features import FEATURE_NAMES, LEVELS, TARGET
from app.ml.pipeline import build_pipeline
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry
from app.serving.loaded_model import REFERENCE_FILE

log = logging.getLogger(__name__)

TRAINING_EXPERIMENT = "model-training"
# skops refuses types it does not know; these are the tree internals of our pipeline's models.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.dtype"]
STAGES = ("data", "fit", "evaluate", "log", "register")

Progress = Callable[[str], None]


@dataclass
class TrainingResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    params: dict[str, object]
    rows: int
    promoted: bool
    tags: dict[str, str] = field(default_factory=dict)
    semver: str | None = None
    change_type: str | None = None


def load_data(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in (*FEATURE_NAMES, TARGET) if c not in df.columns]
    if missing:
        raise ValueError(f"training data lacks columns: {', '.join(missing)}")
    return df[[*FEATURE_NAMES, TARGET]]


def _confusion_matrix_figure(model, test: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 4))
    ConfusionMatrixDisplay.from_estimator(
        model, test[list(FEATURE_NAMES)], test[TARGET], labels=list(LEVELS), ax=ax, colorbar=False
    )
    ax.set_title("Held-out confusion matrix")
    fig.tight_layout()
    return fig


def _feature_importances(model) -> dict[str, float]:
    classifier = model[-1]
    values = getattr(classifier, "feature_importances_", None)
    if values is None:
        return {}
    names = model[:-1].get_feature_names_out()
    return dict(sorted(((str(n), float(v)) for n, v in zip(names, values)), key=lambda kv: -kv[1]))


def train_and_register(
    settings: Settings,
    data: pd.DataFrame | None = None,
    rows: int | None = None,
    seed: int | None = None,
    progress: Progress = lambda stage: None,
    extra_tags: dict[str, str] | None = None,
    bump: str | None = None,
) -> TrainingResult:
    """Train, log everything to MLflow, register a version with its semver; the first becomes Production.

    ``bump`` ("major", "minor", "patch") overrides the change type detected against Production.
    """
    registry = ModelRegistry(
        settings.tracking_uri, settings.registry_uri, settings.artifact_root, settings.model_cache_dir
    )
    experiment_ids = registry.ensure_experiments()
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        return _train_and_register(settings, registry, experiment_ids, data, rows, seed, progress,
                                   extra_tags, bump)


@contextlib.contextmanager
def _mlflow_uris(tracking_uri: str, registry_uri: str):
    """Point MLflow's fluent API at our stores, then put back what was there.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the environment, which
    would leak into every ``Settings()`` built later in the same process.
    """
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class FittedModel:
    """A fitted, evaluated pipeline and what logging or a dry run needs of it."""

    model: object
    metrics: dict[str, float]
    params: dict[str, object]
    data: pd.DataFrame
    train_rows: int
    test: pd.DataFrame
    reference: pd.DataFrame
    example: pd.DataFrame
    signature: object

    def record(self, run_id: str, algorithm: str) -> VersionRecord:
        return VersionRecord(
            run_id=run_id,
            metrics={k: v for k, v in self.metrics.items() if not k.startswith("baseline")},
            training_rows=self.train_rows, features=list(FEATURE_NAMES),
            classes=[str(c) for c in self.model.classes_], algorithm=algorithm,
            hyperparameters=hyperparameters_of(self.model[-1]),
            signature=signature_fingerprint(self.signature),
        )


def fit_and_evaluate(settings: Settings, data, rows, seed, progress: Progress) -> FittedModel:
    """Data, fit, held-out evaluation (blocking; touches no store)."""
    cfg = settings.training
    seed = cfg.seed if seed is None else seed
    progress("data")
    df = data if data is not None else generate(rows or cfg.rows, seed=seed)
    train, test = split(df, cfg.test_size, seed)
    x_train, y_train = train[list(FEATURE_NAMES)], train[TARGET]

    progress("fit")
    params: dict[str, object] = {"n_estimators": cfg.n_estimators} if cfg.algorithm == "random_forest" else {}
    model = build_pipeline(cfg.algorithm, params, seed).fit(x_train, y_train)

    progress("evaluate")
    metrics = evaluate(model, train, test)
    example = x_train.head(5)
    with warnings.catch_warnings():  # integer columns are never missing: bounds are enforced
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, model.predict(example))
    logged_params = {
        "algorithm": cfg.algorithm, "seed": seed, "rows": len(df), "train_rows": len(train),
        "test_rows": len(test), "test_size": cfg.test_size, **params,
    }
    reference = train.sample(min(cfg.reference_rows, len(train)), random_state=seed)
    return FittedModel(model, metrics, logged_params, df, len(train), test, reference, example,
                       signature)


def model_format(fitted: FittedModel, reference_path: Path) -> dict:
    """How the model is stored, logged or saved alike: skops, signature, input example, and the
    reference sample (written to ``reference_path``) as an extra file."""
    fitted.reference.to_parquet(reference_path, index=False)
    return {"signature": fitted.signature, "input_example": fitted.example,
            "skops_trusted_types": SKOPS_TRUSTED_TYPES, "extra_files": [str(reference_path)]}


def _train_and_register(settings, registry, experiment_ids, data, rows, seed, progress, extra_tags,
                        bump=None):
    cfg = settings.training
    fitted = fit_and_evaluate(settings, data, rows, seed, progress)
    model, metrics, logged_params, df = fitted.model, fitted.metrics, fitted.params, fitted.data

    progress("log")
    name = settings.model.name
    with mlflow.start_run(experiment_id=experiment_ids[TRAINING_EXPERIMENT]) as run:
        mlflow.log_params(logged_params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"model_name": name, **(extra_tags or {})})
        fig = _confusion_matrix_figure(model, fitted.test)
        mlflow.log_figure(fig, "evaluation/confusion_matrix.png")
        plt.close(fig)
        importances = _feature_importances(model)
        if importances:
            mlflow.log_dict(importances, "evaluation/feature_importances.json")
        mlflow.log_dict(
            {"class_distribution": df[TARGET].value_counts(normalize=True).round(4).to_dict()},
            "data/summary.json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            reference_path = Path(tmp) / REFERENCE_FILE
            stored_as = model_format(fitted, reference_path)
            mlflow.log_artifact(str(reference_path), artifact_path="reference")
            progress("register")
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                            await_registration_for=60, **stored_as)
        version = str(info.registered_model_version)

    tags = {"run_id": run.info.run_id, **(extra_tags or {})}
    for key, value in metrics.items():
        if not key.startswith("baseline"):
            registry.client.set_model_version_tag(name, version, f"metric.{key}", f"{value:.6f}")
    record = assign_semver(registry, name, settings.model.alias, version,
                           fitted.record(run.info.run_id, cfg.algorithm), bump=bump)
    promoted = _promote_if_first(registry, settings, version)
    return TrainingResult(
        run_id=run.info.run_id, model_name=name, version=version, metrics=metrics,
        params=logged_params, rows=len(df), promoted=promoted, tags=tags,
        semver=record.semver, change_type=record.change_type,
    )


def _promote_if_first(registry: ModelRegistry, settings: Settings, version: str) -> bool:
    """The first version of a model becomes Production; later ones wait for a promotion."""
    name, alias = settings.model.name, settings.model.alias
    registered = registry.client.get_registered_model(name)
    if alias in (registered.aliases or {}):
        return False
    registry.set_alias(name, alias, version)
    log.info("made version %s of %s the %s version", version, name, alias)
    return True


async def record_run(settings: Settings, result: TrainingResult) -> None:
    engine = create_engine(settings.db_url)
    try:
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
            if result.promoted:  # the first version became Production: that move is audited too
                session.add(
                    ModelPromotion(
                        model_name=result.model_name, actor="training", action="auto",
                        from_version=None, to_version=result.version,
                        reason="first version of the model", outcome="success",
                        detail=f"semver {result.semver}",
                    )
                )
    finally:
        await engine.dispose()


async def train(settings: Settings, **kwargs) -> TrainingResult:
    """Train off the event loop, then record the run in the database."""
    result = await asyncio.to_thread(train_and_register, settings, **kwargs)
    await record_run(settings, result)
    return result
