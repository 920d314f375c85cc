"""The lean predict path: validated row dicts -> class probabilities without pandas.

The pyfunc / pipeline path builds a DataFrame per request, lets the ColumnTransformer slice it,
hstack a sparse matrix, and runs the forest through joblib. For one row that fixed cost dominates.
Here the fitted sub-transformers get numpy arrays built column-wise from the rows, their outputs
are stacked dense, and a RandomForest's trees are summed in the forest's own order (so the floats
are the same as ``predict_proba``'s). Anything this module does not recognise is left to the
pipeline; ``LoadedModel`` also checks on load that both paths agree before trusting this one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from app.ml.features import CATEGORICAL


class Unsupported(Exception):
    """The pipeline has a shape the lean path does not handle; use the pipeline itself."""


class LeanPredictor:
    def __init__(self, pipeline: object) -> None:
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

    def transform(self, rows: list[dict[str, Any]]) -> npt.NDArray[Any]:
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
        x = self.transform(rows)
        if self._trees is None:
            result: npt.NDArray[np.float64] = self.classifier.predict_proba(x)
            return result
        x = np.ascontiguousarray(x, dtype=np.float32)
        proba = np.zeros((len(rows), len(self.classes)), dtype=np.float64)
        for tree in self._trees:
            proba += tree.predict_proba(x, check_input=False)
        proba /= len(self._trees)
        return proba
