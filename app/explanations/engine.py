"""The TreeSHAP engine of one model version: its forest as flat node arrays, its model matrix's
columns mapped back to the HR features, and the kernel warmed up.

Built once per version (``ExplanationEngine.of``) from a ``LoadedModel``; only a two-step
pipeline of a fitted ``ColumnTransformer`` (one-hot encoders, scalers, passthrough) and a
``RandomForestClassifier`` is explained. Anything else raises ``ExplanationUnavailable``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from app.cpu import cores, cpu_pool
from app.errors import ExplanationUnavailable
from app.explanations import treeshap
from app.ml.features import LEVELS
from app.serving.loaded_model import LoadedModel, to_frame

Floats = npt.NDArray[np.float64]


def _tree_ranges(sizes: list[int], parts: int) -> list[tuple[int, int]]:
    """Contiguous tree ranges of about equal node counts (the kernel's work is about linear in them)."""
    bounds = np.searchsorted(np.cumsum(sizes), np.linspace(0, sum(sizes), parts + 1)[1:-1])
    edges = [0, *sorted({int(b) + 1 for b in bounds if 0 <= b < len(sizes) - 1}), len(sizes)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


@dataclass(frozen=True)
class Explained:
    """The kernel's answer for some rows, classes in LEVELS order."""

    columns: Floats  # rows x model-matrix columns x classes
    features: Floats  # rows x HR features x classes (one-hot columns summed per categorical)
    base: Floats  # classes
    proba: Floats  # rows x classes: the forest's own probabilities (float64 tree sums)


def _column_groups(preprocess: Any, width: int) -> list[tuple[str, list[int]]]:
    """HR feature -> its columns of the model matrix, in the transformer's order."""
    groups: list[tuple[str, list[int]]] = []
    for name, transformer, columns in preprocess.transformers_:
        if transformer == "drop" or (name == "remainder" and len(columns) == 0):
            continue
        if not all(isinstance(c, str) for c in columns):
            raise ExplanationUnavailable("explanations need columns selected by name")
        out = preprocess.output_indices_[name]
        start = out.start
        if isinstance(transformer, OneHotEncoder):
            if transformer.drop_idx_ is not None or getattr(transformer, "_infrequent_enabled", False):
                raise ExplanationUnavailable("explanations need a one-hot encoder that keeps every category")
            for column, categories in zip(columns, transformer.categories_, strict=True):
                groups.append((column, list(range(start, start + len(categories)))))
                start += len(categories)
        elif isinstance(transformer, StandardScaler) or transformer == "passthrough":
            for column in columns:
                groups.append((column, [start]))
                start += 1
        else:
            raise ExplanationUnavailable(
                f"explanations do not know the transformer {type(transformer).__name__}"
            )
        if start != out.stop:
            raise ExplanationUnavailable(f"the columns of transformer {name!r} could not be mapped")
    if sorted(c for _, cols in groups for c in cols) != list(range(width)):
        raise ExplanationUnavailable("the model matrix's columns could not be mapped to the features")
    return groups


class ExplanationEngine:
    """Exact path-dependent TreeSHAP of one version's forest (see ``treeshap``)."""

    method = "tree_path_dependent"

    def __init__(self, model: LoadedModel) -> None:
        pipeline = model.fitted()  # read now if the version serves from its bundle
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise ExplanationUnavailable(
                "explanations need a pipeline of a column transformer and a random forest"
            )
        preprocess, forest = pipeline.steps[0][1], pipeline.steps[1][1]
        if type(forest) is not RandomForestClassifier or forest.n_outputs_ != 1:
            raise ExplanationUnavailable(
                f"exact TreeSHAP explanations need a random forest; version {model.version} is a "
                f"{type(forest).__name__}"
            )
        if not isinstance(preprocess, ColumnTransformer):
            raise ExplanationUnavailable("explanations need a column transformer before the forest")
        self.model = model
        self.preprocess = preprocess
        self.width = int(forest.n_features_in_)
        self.groups = _column_groups(preprocess, self.width)
        self.feature_names = [name for name, _ in self.groups]
        classes = [str(c) for c in forest.classes_]
        if sorted(classes) != sorted(LEVELS):
            raise ExplanationUnavailable("the forest's classes are not the levels LOW, MEDIUM, HIGH")
        order = [classes.index(level) for level in LEVELS]
        self._build_arrays(forest, order)
        # The HR-feature grouping as a matrix: features = columns @ grouping.
        self._grouping = np.zeros((self.width, len(self.groups)))
        for g, (_, cols) in enumerate(self.groups):
            self._grouping[cols, g] = 1.0
        self.jt, self.jw = treeshap.quadrature_tables(self.max_depth)
        self.explain_matrix(np.zeros((1, self.width), dtype=np.float32))  # compile / load the JIT

    def _build_arrays(self, forest: Any, order: list[int]) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = [tree.node_count for tree in trees]
        self.roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.left = np.concatenate([t.children_left for t in trees]).astype(np.int32)
        self.right = np.concatenate([t.children_right for t in trees]).astype(np.int32)
        self.feature = np.concatenate([t.feature for t in trees]).astype(np.int32)
        self.threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
        self.cover = np.concatenate([t.weighted_n_node_samples for t in trees]).astype(np.float64)
        value = np.concatenate([t.value[:, 0, :] for t in trees]).astype(np.float64)[:, order]
        # Class fractions per node (older scikit-learn stores counts), averaged over the trees.
        value /= value.sum(axis=1, keepdims=True)
        value /= len(trees)
        self.value = np.ascontiguousarray(value)
        self.max_depth = max(int(t.max_depth) for t in trees)
        self.ranges = _tree_ranges(sizes, cores())
        leaf = self.left < 0
        root_of = np.repeat(self.roots, sizes)
        # Base value: each leaf's value weighted by its share of its tree's root cover.
        self.base = (self.value[leaf] * (self.cover[leaf] / self.cover[root_of[leaf]])[:, None]).sum(axis=0)

    @property
    def nbytes(self) -> int:
        """Memory held by the engine's arrays (the pipeline itself is the LoadedModel's)."""
        arrays = (self.roots, self.left, self.right, self.feature, self.threshold, self.cover,
                  self.value, self._grouping, self.jt, self.jw, self.base)
        return sum(a.nbytes for a in arrays)

    def matrix(self, rows: list[dict[str, Any]]) -> npt.NDArray[np.float32]:
        """The model matrix of validated rows, as the version's serving path builds it."""
        fast, lean = self.model.fast, self.model.lean
        if fast is not None:
            return fast.transform_rows(rows)
        if lean is not None:
            return np.ascontiguousarray(lean.transform(rows), dtype=np.float32)
        dense = self.preprocess.transform(to_frame(rows))
        dense = dense.toarray() if hasattr(dense, "toarray") else dense
        return np.ascontiguousarray(dense, dtype=np.float32)

    def explain_matrix(self, x: npt.NDArray[Any]) -> Explained:
        """Shapley values of model-matrix rows (blocking, CPU-bound: run it in a thread)."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if x32.ndim != 2 or x32.shape[1] != self.width:
            raise ValueError(f"expected rows of {self.width} columns")
        if not np.isfinite(x32).all():
            raise ValueError("explanations need finite feature values")
        x64 = x32.astype(np.float64)
        per_tree = np.zeros((len(x64), len(self.roots), self.width, self.value.shape[1]))

        def run(trees: tuple[int, int]) -> None:
            treeshap.explain_trees(x64, self.roots, self.left, self.right, self.feature, self.threshold,
                                   self.cover, self.value, self.max_depth, self.jt, self.jw,
                                   trees[0], trees[1], per_tree)

        if len(self.ranges) == 1:
            run(self.ranges[0])
        else:
            list(cpu_pool().map(run, self.ranges))
        columns = per_tree.sum(axis=1)  # the same order on any schedule
        features = np.einsum("rjc,jg->rgc", columns, self._grouping)
        proba = self._forest_proba(x64)
        return Explained(columns=columns, features=features, base=self.base.copy(), proba=proba)

    def _forest_proba(self, x64: Floats) -> Floats:
        """The forest's probabilities (float64, LEVELS order): what the contributions must add
        up to. Its own descent of each tree (scikit-learn's per-tree calls cost milliseconds)."""
        return treeshap.forest_proba(x64, self.roots, self.left, self.right, self.feature,
                                     self.threshold, self.value)

    def explain_rows(self, rows: list[dict[str, Any]]) -> tuple[npt.NDArray[np.float32], Explained]:
        x = self.matrix(rows)
        return x, self.explain_matrix(x)
