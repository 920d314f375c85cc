"""A model version loaded for serving: the scikit-learn pipeline plus what describes it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import numpy.typing as npt
import pandas as pd
from mlflow.models import Model
from mlflow.models.signature import ModelSignature

from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS, SCORE_WEIGHTS
from app.registry.client import VersionRef
from app.serving.lean_predict import LeanPredictor, Unsupported

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.parquet"
LEAN_CHECK_ROWS = 200


@dataclass
class LoadedModel:
    ref: VersionRef
    pipeline: Any  # an sklearn Pipeline (sklearn ships no types)
    signature: ModelSignature | None
    reference: pd.DataFrame | None
    loaded_at: float = field(default_factory=time.time)
    # The pandas-free path (see lean_predict); None when the pipeline's shape is not supported.
    lean: LeanPredictor | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def semver(self) -> str | None:
        return self.ref.semver

    def predict_proba(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Class probabilities in LEVELS order, whatever order the classifier learned them in."""
        return self._in_level_order(self.pipeline.predict_proba(frame))

    def predict_rows(self, rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
        """Class probabilities in LEVELS order for validated rows, by the lean path when possible."""
        if self.lean is None:
            return self.predict_proba(to_frame(rows))
        return self._in_level_order(self.lean.predict_proba(rows))

    def levels_of(self, proba: npt.NDArray[np.float64]) -> list[str]:
        """Predicted level per row, ties broken as the pipeline's ``predict`` (pyfunc) breaks them."""
        classes = list(self.pipeline.classes_)
        in_class_order = proba[:, [LEVELS.index(c) for c in classes]]
        return [classes[i] for i in in_class_order.argmax(axis=1)]

    def _in_level_order(self, proba: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        classes = list(self.pipeline.classes_)
        if classes != list(LEVELS):
            proba = proba[:, [classes.index(level) for level in LEVELS]]
        return proba

    def enable_lean_path(self) -> None:
        """Use the lean path only if it reproduces the pipeline exactly on the reference sample."""
        try:
            lean = LeanPredictor(self.pipeline)
        except Unsupported as exc:
            log.info("version %s: lean predict path not used (%s)", self.version, exc)
            return
        if self.reference is not None:
            rows = self.reference.head(LEAN_CHECK_ROWS)[list(FEATURE_NAMES)].to_dict("records")
            expected = self.pipeline.predict_proba(to_frame(rows))
            if not np.array_equal(lean.predict_proba(rows), expected):
                log.warning("version %s: lean path disagrees with the pipeline; not used", self.version)
                return
        self.lean = lean


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated rows -> a model input frame in schema column order."""
    frame = pd.DataFrame.from_records(rows, columns=FEATURE_NAMES)
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(object)
    return frame


def score_of(proba: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    weights = np.array([SCORE_WEIGHTS[level] for level in LEVELS])
    scores: npt.NDArray[np.float64] = 100.0 * proba @ weights
    return scores


def load_from_path(ref: VersionRef, path: Path) -> LoadedModel:
    """Load a downloaded MLflow model directory (blocking: run it in a thread)."""
    pipeline = mlflow.sklearn.load_model(str(path))
    signature = Model.load(str(path)).signature
    reference_path = path / "extra_files" / REFERENCE_FILE
    reference = pd.read_parquet(reference_path) if reference_path.exists() else None
    model = LoadedModel(ref=ref, pipeline=pipeline, signature=signature, reference=reference)
    model.enable_lean_path()
    return model
