"""The two sides of a drift report, in the shape the engines need: numeric arrays and value counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS, NUMERIC

LEVEL_COLUMN = "level"
CONFIDENCE_COLUMN = "confidence"  # the predicted level's probability


def _categorical(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encode a string column: integer codes plus the distinct values."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks() if encoded.num_chunks else pa.array(
            [], pa.dictionary(pa.int32(), pa.string())
        )
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return codes, encoded.dictionary.to_pylist()


def _counts(codes: np.ndarray, values: list[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(values)) if len(codes) else np.zeros(len(values), int)
    return {v: int(c) for v, c in zip(values, counts, strict=True) if c}


@dataclass
class ColumnSet:
    """Numeric columns as float arrays, categorical ones as value counts (plus unseen counts)."""

    rows: int
    numeric: dict[str, np.ndarray]
    categorical: dict[str, dict[str, int]]
    levels: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)
    rows_with_unseen: int = 0

    @classmethod
    def from_arrow(cls, table: pa.Table, vocabulary: dict[str, set[str]] | None = None) -> ColumnSet:
        numeric = {
            name: table.column(name).cast(pa.float64()).to_numpy() for name in NUMERIC
        }
        categorical, unseen = {}, {}
        any_unseen = np.zeros(table.num_rows, dtype=bool)
        for name in CATEGORICAL:
            codes, values = _categorical(table.column(name))
            categorical[name] = _counts(codes, values)
            if vocabulary is not None:
                is_new = np.array([v not in vocabulary[name] for v in values], dtype=bool)
                if is_new.any() and len(codes):
                    mask = is_new[codes]
                    any_unseen |= mask
                    unseen[name] = int(mask.sum())
                else:
                    unseen[name] = 0
        levels: dict[str, int] = {}
        if LEVEL_COLUMN in table.column_names:
            codes, values = _categorical(table.column(LEVEL_COLUMN))
            levels = _counts(codes, values)
        return cls(
            rows=table.num_rows, numeric=numeric, categorical=categorical, levels=levels,
            unseen=unseen, rows_with_unseen=int(any_unseen.sum()),
        )


@dataclass
class Window:
    """The current window as read from the prediction log."""

    table: pa.Table  # the 12 features, the predicted level and its probability (confidence)
    start: datetime | None
    end: datetime | None
    rows_in_window: int
    sampled: bool
    max_rows: int

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def note(self) -> str | None:
        if not self.sampled:
            return None
        return (f"the window held {self.rows_in_window} predictions, more than the cap of "
                f"{self.max_rows}; a uniform random sample of {self.rows} was compared")

    def to_pandas(self) -> pd.DataFrame:
        return self.table.select(list(FEATURE_NAMES)).to_pandas()

    def confidence(self) -> np.ndarray:
        if CONFIDENCE_COLUMN not in self.table.column_names:
            return np.zeros(0)
        values: np.ndarray = self.table.column(CONFIDENCE_COLUMN).to_numpy()
        return values


@dataclass
class Reference:
    """A model version's reference sample, prepared once per version."""

    model_name: str
    model_version: str
    frame: pd.DataFrame  # the 12 features
    columns: ColumnSet
    vocabulary: dict[str, set[str]]
    # The model's confidence on rows it was not trained on (its held-out rows), and where they
    # came from; a forest is nearly certain on its training rows, so those would not do.
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence_source: str = "none"

    @property
    def rows(self) -> int:
        return len(self.frame)

    @classmethod
    def build(
        cls, model_name: str, model_version: str, frame: pd.DataFrame,
        predicted_levels: list[str] | np.ndarray, vocabulary: dict[str, set[str]] | None = None,
    ) -> Reference:
        features = frame[list(FEATURE_NAMES)].reset_index(drop=True)
        if vocabulary is None:
            vocabulary = {name: set(map(str, features[name].unique())) for name in CATEGORICAL}
        table = pa.Table.from_pandas(features, preserve_index=False).append_column(
            LEVEL_COLUMN, pa.array([str(v) for v in predicted_levels], pa.string())
        )
        columns = ColumnSet.from_arrow(table)
        for level in LEVELS:
            columns.levels.setdefault(level, 0)
        return cls(model_name, model_version, features, columns, vocabulary)
