"""One chunk's feature columns checked the way the HR API checks its items, column at a time.

The rules are the feature schema's (``app.ml.features``): categoricals are non-empty single-line
text of bounded length, numbers are finite and within bounds, integers are whole. Checks are
vectorized (pyarrow and numpy); an error names the column and the 1-based row of the input, and
never the value. Extra columns are not the model's business and are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.batch_scoring.errors import BatchInputError
from app.ml.features import FEATURE_NAMES, FEATURES, Feature
from app.serving.codecs.hygiene import SAFE_TEXT_MESSAGE

# C0 and C1 control characters and DEL, as app.serving.codecs.hygiene refuses them (RE2 syntax).
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"


def check_columns(names: list[str]) -> None:
    """Every feature column is present (extra columns are allowed and copied to the output)."""
    missing = [name for name in FEATURE_NAMES if name not in names]
    if missing:
        raise BatchInputError("missing required column(s): " + ", ".join(missing))


_Compare = Callable[[npt.NDArray[np.float64], float], npt.NDArray[np.bool_]]


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


class _Problems:
    """The earliest bad row over all columns of a chunk."""

    def __init__(self, first_row: int) -> None:
        self.first_row = first_row
        self.found: tuple[int, str, str] | None = None

    def check(self, column: str, mask: npt.NDArray[np.bool_], problem: str) -> None:
        index = _first(mask)
        if index is not None and (self.found is None or index < self.found[0]):
            self.found = (index, column, problem)

    def raise_any(self) -> None:
        if self.found is not None:
            index, column, problem = self.found
            raise BatchInputError(
                f"invalid value in column '{column}' at row {self.first_row + index}: {problem}"
            )


def _nulls(array: pa.Array) -> npt.NDArray[np.bool_]:
    mask: npt.NDArray[np.bool_] = array.is_null().to_numpy(zero_copy_only=False)
    return mask


def _text(feature: Feature, array: pa.Array, problems: _Problems) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    if not pa.types.is_string(array.type):
        raise BatchInputError(f"column '{feature.name}' holds {array.type}; text is expected")
    nulls = _nulls(array)
    problems.check(feature.name, nulls, "missing value")
    lengths = pc.utf8_length(array).fill_null(1).to_numpy(zero_copy_only=False)
    problems.check(feature.name, lengths < 1, "must not be empty")
    problems.check(feature.name, lengths > feature.max_length,
                   f"must be at most {feature.max_length} characters")
    control = pc.match_substring_regex(array, _CONTROL).fill_null(False)
    problems.check(feature.name, control.to_numpy(zero_copy_only=False), SAFE_TEXT_MESSAGE)
    return array


def _parse_numbers(feature: Feature, array: pa.Array, first_row: int) -> pa.Array:
    """Text -> float64; on a cell that is not a number, find it by bisection (no value echoed)."""
    try:
        return pc.cast(array, pa.float64())
    except pa.ArrowInvalid:
        pass
    lo, hi = 0, len(array)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(array.slice(lo, mid - lo), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    raise BatchInputError(
        f"invalid value in column '{feature.name}' at row {first_row + lo}: must be a number"
    )


def _number(feature: Feature, array: pa.Array, problems: _Problems) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        array = _parse_numbers(feature, array, problems.first_row)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        array = pc.cast(array, pa.float64(), safe=False)
    elif pa.types.is_null(kind):
        array = pa.nulls(len(array), pa.float64())
    else:
        raise BatchInputError(f"column '{feature.name}' holds {kind}; numbers are expected")
    nulls = _nulls(array)
    problems.check(feature.name, nulls, "missing value")
    values: npt.NDArray[np.float64] = array.to_numpy(zero_copy_only=False)
    values = np.where(nulls, 0.0, values)  # nulls are reported above; keep them out of the bounds
    problems.check(feature.name, ~np.isfinite(values), "must be a finite number")
    bounds: list[tuple[float | None, _Compare, str]] = [
        (feature.minimum, np.less, "must be at least {}"),
        (feature.exclusive_minimum, np.less_equal, "must be greater than {}"),
        (feature.maximum, np.greater, "must be at most {}"),
    ]
    for bound, outside, message in bounds:
        if bound is not None:
            problems.check(feature.name, outside(values, bound), message.format(_plain(bound)))
    if feature.kind == "integer":
        finite = np.clip(np.where(np.isfinite(values), values, 0.0), -(2.0**62), 2.0**62)
        problems.check(feature.name, finite != np.floor(finite), "must be a whole number")
        return pa.array(finite.astype(np.int64))
    return pa.array(values)


def _plain(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


@dataclass(frozen=True)
class CheckedChunk:
    features: dict[str, pa.Array]  # typed: text, int64 or float64, no nulls

    def frame(self) -> pd.DataFrame:
        """The model's input frame: schema column order, categoricals as object."""
        return pd.DataFrame(
            {name: self.features[name].to_numpy(zero_copy_only=False) for name in FEATURE_NAMES},
            columns=list(FEATURE_NAMES),
        )


def check_chunk(batch: pa.RecordBatch, first_row: int) -> CheckedChunk:
    """The chunk's feature columns, checked and typed.

    ``first_row`` is the 1-based input row of the chunk's first row; errors count from it.
    """
    problems = _Problems(first_row)
    features: dict[str, pa.Array] = {}
    for feature in FEATURES:
        array = batch.column(feature.name)
        features[feature.name] = (_text(feature, array, problems) if feature.is_categorical
                                  else _number(feature, array, problems))
    problems.raise_any()
    return CheckedChunk(features)
