"""The pipeline's feature transform from its fitted parameters, without scikit-learn per call.

A fitted ``ColumnTransformer`` of ``OneHotEncoder`` / ``StandardScaler`` / passthrough parts is
read once: each category becomes a dict lookup giving its column, each scaled block an affine map
with the scaler's own ``mean_`` and ``scale_`` (subtracted and divided in float64, as the scaler
does). Rows or a frame are written into one float32 matrix, the dtype the forest's trees compare
in. Unknown categories give an all-zero block when the encoder ignores them and raise when it
does not, as scikit-learn does. ``LoadedModel`` checks the result against the fitted transform on
the reference sample before using it.

The parameters also travel as plain data (``to_dict`` / ``from_dict``: category lists, float64
means and scales, which JSON keeps exactly), so that a worker serving a version's compiled bundle
(``app.serving.bundle``) builds this transform without unpickling the pipeline or importing
scikit-learn, which ``FastTransform.of`` alone needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

Matrix = npt.NDArray[np.float32]
SMALL_ROWS = 16  # up to this many rows, one row at a time in plain Python
FORMAT = 1  # of ``to_dict``


class Unsupported(Exception):
    """The pipeline has a shape the lean path or the fast transform does not handle."""


@dataclass(frozen=True)
class _Categorical:
    name: str
    offset: int
    lookup: dict[str, int]
    ignore_unknown: bool


@dataclass(frozen=True)
class _Numeric:
    names: list[str]
    start: int
    mean: npt.NDArray[np.float64] | None
    scale: npt.NDArray[np.float64] | None


def _encoder_part(encoder: Any, columns: list[str], offset: int) -> tuple[list[_Categorical], int]:
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("one-hot encoder drops or groups categories")
    if encoder.handle_unknown not in ("ignore", "error", "infrequent_if_exist"):
        raise Unsupported(f"handle_unknown={encoder.handle_unknown!r}")
    parts = []
    for name, categories in zip(columns, encoder.categories_, strict=True):
        if not all(isinstance(c, str) for c in categories):
            raise Unsupported(f"categories of {name} are not all strings")
        lookup = {c: offset + i for i, c in enumerate(categories)}
        # infrequent_if_exist without infrequent categories ignores unknowns, like "ignore"
        parts.append(_Categorical(name, offset, lookup, encoder.handle_unknown != "error"))
        offset += len(categories)
    return parts, offset


def _floats(values: Any) -> npt.NDArray[np.float64] | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


class FastTransform:
    def __init__(self, categorical: list[_Categorical], numeric: list[_Numeric], width: int) -> None:
        self._categorical = categorical
        self._numeric = numeric
        self.width = width
        self._affine_floats = [
            (None if b.mean is None else b.mean.tolist(), None if b.scale is None else b.scale.tolist())
            for b in self._numeric
        ]

    @classmethod
    def of(cls, preprocess: object) -> FastTransform:
        """The transform of a fitted ``ColumnTransformer``; ``Unsupported`` for any other shape."""
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        if not isinstance(preprocess, ColumnTransformer):
            raise Unsupported("first step is not a ColumnTransformer")
        categorical: list[_Categorical] = []
        numeric: list[_Numeric] = []
        width = 0
        for name, transformer, columns in preprocess.transformers_:
            if transformer == "drop" or (name == "remainder" and len(columns) == 0):
                continue
            if not all(isinstance(c, str) for c in columns):
                raise Unsupported("columns must be selected by name")
            columns = list(columns)
            if isinstance(transformer, OneHotEncoder):
                parts, width = _encoder_part(transformer, columns, width)
                categorical += parts
            elif isinstance(transformer, StandardScaler) or transformer == "passthrough":
                scaler = transformer if isinstance(transformer, StandardScaler) else None
                mean = scaler.mean_ if scaler is not None and scaler.with_mean else None
                scale = scaler.scale_ if scaler is not None and scaler.with_std else None
                numeric.append(_Numeric(columns, width, _floats(mean), _floats(scale)))
                width += len(columns)
            else:
                raise Unsupported(f"transformer {type(transformer).__name__}")
        return cls(categorical, numeric, width)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON-ready data (``from_dict`` gives back an equal transform)."""
        return {
            "format": FORMAT, "width": self.width,
            "categorical": [{"name": p.name, "offset": p.offset, "ignore_unknown": p.ignore_unknown,
                             "categories": sorted(p.lookup, key=p.lookup.__getitem__)}
                            for p in self._categorical],
            "numeric": [{"names": b.names, "start": b.start,
                         "mean": None if b.mean is None else b.mean.tolist(),
                         "scale": None if b.scale is None else b.scale.tolist()}
                        for b in self._numeric],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FastTransform:
        """The transform ``to_dict`` wrote; ``ValueError`` for anything else."""
        try:
            if doc["format"] != FORMAT:
                raise ValueError(f"unknown fast transform format {doc['format']!r}")
            categorical = [
                _Categorical(str(p["name"]), int(p["offset"]),
                             {str(c): int(p["offset"]) + i for i, c in enumerate(p["categories"])},
                             bool(p["ignore_unknown"]))
                for p in doc["categorical"]
            ]
            numeric = [_Numeric([str(n) for n in b["names"]], int(b["start"]), _floats(b["mean"]),
                                _floats(b["scale"])) for b in doc["numeric"]]
            width = int(doc["width"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed fast transform: {type(exc).__name__} {exc}") from exc
        columns = sorted([*(c for p in categorical for c in p.lookup.values()),
                          *(b.start + j for b in numeric for j in range(len(b.names)))])
        if columns != list(range(width)):
            raise ValueError("malformed fast transform: its columns do not cover the matrix")
        return cls(categorical, numeric, width)

    def vocabulary(self) -> dict[str, set[str]]:
        """The categories each categorical feature was fitted with."""
        return {p.name: set(p.lookup) for p in self._categorical}

    def transform_rows(self, rows: Sequence[dict[str, Any]]) -> Matrix:
        """Validated row dicts -> the model matrix (float32, C order)."""
        if len(rows) <= SMALL_ROWS:
            return np.array([self._row(row) for row in rows], dtype=np.float32).reshape(-1, self.width)
        out = np.zeros((len(rows), self.width), dtype=np.float32)
        for part in self._categorical:
            self._one_hot(out, part, [row[part.name] for row in rows])
        for block in self._numeric:
            values = np.array([[row[c] for c in block.names] for row in rows], dtype=np.float64)
            self._affine(out, block, values.reshape(len(rows), len(block.names)))
        return out

    def transform_frame(self, frame: pd.DataFrame) -> Matrix:
        """A model input frame (columns by name) -> the model matrix (float32, C order)."""
        out = np.zeros((len(frame), self.width), dtype=np.float32)
        for part in self._categorical:
            self._one_hot(out, part, frame[part.name].tolist())
        for block in self._numeric:
            self._affine(out, block, frame[block.names].to_numpy(dtype=np.float64))
        return out

    def _row(self, row: dict[str, Any]) -> list[float]:
        # Plain floats for a few rows: numpy's per-call costs dominate there. The same IEEE
        # float64 operations as ``_affine``, so the same values.
        out = [0.0] * self.width
        for part in self._categorical:
            value = row[part.name]
            column = part.lookup.get(value) if isinstance(value, str) else None
            if column is not None:
                out[column] = 1.0
            elif not part.ignore_unknown:
                raise ValueError(f"Found unknown categories in column {part.name} during transform")
        for block, (means, scales) in zip(self._numeric, self._affine_floats, strict=True):
            for j, name in enumerate(block.names):
                value = float(row[name])
                if means is not None:
                    value -= means[j]
                if scales is not None:
                    value /= scales[j]
                out[block.start + j] = value
        return out

    @staticmethod
    def _one_hot(out: Matrix, part: _Categorical, values: list[Any]) -> None:
        lookup = part.lookup
        columns = np.array([lookup.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.intp)
        known = columns >= 0
        if not part.ignore_unknown and not known.all():
            raise ValueError(f"Found unknown categories in column {part.name} during transform")
        out[np.flatnonzero(known), columns[known]] = 1.0

    @staticmethod
    def _affine(out: Matrix, block: _Numeric, values: npt.NDArray[np.float64]) -> None:
        if block.mean is not None:
            values = values - block.mean
        if block.scale is not None:
            values = values / block.scale
        out[:, block.start:block.start + len(block.names)] = values
