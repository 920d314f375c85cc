"""A model version loaded for serving: the scikit-learn pipeline plus what describes it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import Model
from mlflow.models.signature import ModelSignature

from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS, SCORE_WEIGHTS
from app.services.registry import VersionRef

REFERENCE_FILE = "reference.parquet"


@dataclass
class LoadedModel:
    ref: VersionRef
    pipeline: object
    signature: ModelSignature | None
    reference: pd.DataFrame | None
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def semver(self) -> str | None:
        return self.ref.semver

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities in LEVELS order, whatever order the classifier learned them in."""
        proba = self.pipeline.predict_proba(frame)
        classes = list(self.pipeline.classes_)
        if classes != list(LEVELS):
            proba = proba[:, [classes.index(level) for level in LEVELS]]
        return proba

    def labels(self, proba: np.ndarray) -> list[str]:
        """Top level per row of LEVELS-ordered ``proba``, ties broken in the classifier's class order.

        That is what the classifier's own ``predict`` (and so MLflow's pyfunc) returns, even on ties.
        """
        classes = [str(c) for c in self.pipeline.classes_]
        order = [LEVELS.index(c) for c in classes]
        return [classes[i] for i in proba[:, order].argmax(axis=1)]


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Validated rows -> a model input frame in schema column order."""
    frame = pd.DataFrame.from_records(rows, columns=FEATURE_NAMES)
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(object)
    return frame


def score_of(proba: np.ndarray) -> np.ndarray:
    weights = np.array([SCORE_WEIGHTS[level] for level in LEVELS])
    return 100.0 * proba @ weights


def load_from_path(ref: VersionRef, path: Path) -> LoadedModel:
    """Load a downloaded MLflow model directory (blocking: run it in a thread)."""
    pipeline = mlflow.sklearn.load_model(str(path))
    signature = Model.load(str(path)).signature
    reference_path = path / "extra_files" / REFERENCE_FILE
    reference = pd.read_parquet(reference_path) if reference_path.exists() else None
    return LoadedModel(ref=ref, pipeline=pipeline, signature=signature, reference=reference)
