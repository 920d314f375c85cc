"""The lean predict path: validated row dicts -> class probabilities without pandas.

The pyfunc / pipeline path builds a DataFrame per request, lets the ColumnTransformer slice it,
hstack a sparse matrix, and runs the forest through joblib. For one row that fixed cost dominates.
Here the fitted sub-transformers get numpy arrays built column-wise from the rows, their outputs
are stacked dense, and a RandomForest's trees are summed in the forest's own order (so the floats
are the same as ``predict_proba``'s). Anything this module does not recognise is left to the
pipeline; ``LoadedModel`` also checks on load that both paths agree before trusting this one.

When ``LoadedModel`` has checked ``fast_transform`` it replaces the fitted sub-transformers here
(``use_fast_transform``). Calls of more than ``large_rows`` rows sum the trees over row chunks on
``threads`` threads (the trees' Cython code releases the GIL); each row still sums the trees in the
forest's order, so the floats do not change.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from app.cpu import cores, cpu_pool
from app.ml.features import CATEGORICAL
from app.serving.fast_transform import FastTransform, Unsupported

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LeanPredictor", "Unsupported"]
LARGE_CHUNK_MIN_ROWS = 512


class LeanPredictor:
    def __init__(self, pipeline: object, *, large_rows: int = 1024, threads: int = 0) -> None:
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise Unsupported("not a two-step Pipeline")
        preprocess, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
        if not isinstance(preprocess, ColumnTransformer):
            raise Unsupported("first step is not a ColumnTransformer")
        # sklearn ships no types: its transformers and classifiers are Any here
        self._parts: list[tuple[Any, list[str], bool]] = []
        for name, transformer, columns in preprocess.transformers_:
            if transformer == "drop" or (name == "remainder" and len(columns) == 0):
                continue
            if not all(isinstance(c, str) for c in columns):
                raise Unsupported("columns must be selected by name")
            categorical = any(c in CATEGORICAL for c in columns)
            if categorical and not all(c in CATEGORICAL for c in columns):
                raise Unsupported("a transformer mixes categorical and numeric columns")
            if transformer == "passthrough":
                if categorical:
                    raise Unsupported("categorical passthrough")
                self._parts.append((None, list(columns), False))
                continue
            # A copy without feature_names_in_ takes positional arrays without a warning per call.
            part = copy.copy(transformer)
            if hasattr(part, "feature_names_in_"):
                del part.feature_names_in_
            self._parts.append((part, list(columns), categorical))
        self.classifier = classifier
        # Trees summed here in estimators_ order == the forest's own predict_proba with n_jobs=1.
        self._trees = (
            list(classifier.estimators_)
            if type(classifier) is RandomForestClassifier and classifier.n_outputs_ == 1
            else None
        )
        if self._trees is None and hasattr(classifier, "n_jobs"):
            classifier.n_jobs = 1  # single-threaded: threads only fight over the GIL here
        self.classes = list(classifier.classes_)
        self.fast: FastTransform | None = None
        self.large_rows = large_rows
        self.threads = threads or cores()

    @property
    def sums_trees(self) -> bool:
        return self._trees is not None

    def use_fast_transform(self, fast: FastTransform) -> None:
        self.fast = fast

    def transform(self, rows: list[dict[str, Any]]) -> npt.NDArray[Any]:
        if self.fast is not None:
            return self.fast.transform_rows(rows)
        blocks = []
        for part, columns, categorical in self._parts:
            dtype = object if categorical else np.float64
            block = np.array([[row[c] for c in columns] for row in rows], dtype=dtype)
            if part is not None:
                block = part.transform(block)
                if sparse.issparse(block):
                    block = block.toarray()
            blocks.append(block)
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]

    def predict_proba(self, rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
        """Probabilities in the classifier's ``classes_`` order."""
        return self.forest_proba(self.transform(rows))

    def predict_frame(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The same for a model input frame; only with the fast transform."""
        assert self.fast is not None, "predict_frame needs the fast transform"
        return self.forest_proba(self.fast.transform_frame(frame))

    def forest_proba(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """The classifier on the model matrix, in ``classes_`` order."""
        if self._trees is None:
            result: npt.NDArray[np.float64] = self.classifier.predict_proba(x)
            return result
        x = np.ascontiguousarray(x, dtype=np.float32)
        chunks = min(self.threads, len(x) // LARGE_CHUNK_MIN_ROWS)
        if len(x) <= self.large_rows or chunks < 2:
            return self._sum_trees(x)
        return np.vstack(list(cpu_pool(self.threads).map(self._sum_trees, np.array_split(x, chunks))))

    def _sum_trees(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        assert self._trees is not None
        proba = np.zeros((len(x), len(self.classes)), dtype=np.float64)
        for tree in self._trees:
            proba += tree.predict_proba(x, check_input=False)
        proba /= len(self._trees)
        return proba
