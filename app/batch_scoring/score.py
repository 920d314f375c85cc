"""Scoring a file: read a chunk, check it, predict, append the chunk with its predictions.

The model is the service's own ``LoadedModel`` (whatever predictor it uses inside:
``predict_proba`` is the one call made here). Blocking from start to end: async callers run
``score_file`` in a worker thread.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from app.batch_scoring.errors import BatchInputError
from app.batch_scoring.formats import Format, atomic_output, open_input
from app.batch_scoring.prefetch import prefetch
from app.batch_scoring.validate import CheckedChunk, check_chunk, check_columns
from app.ml.features import BY_NAME, LEVELS
from app.serving.loaded_model import LoadedModel, score_of

PROBABILITY_COLUMNS = tuple(f"prob_{level}" for level in LEVELS)
OUTPUT_COLUMNS = ("level", "score", *PROBABILITY_COLUMNS)
_FEATURE_TYPES = {"categorical": pa.string(), "integer": pa.int64(), "float": pa.float64()}


@dataclass(frozen=True)
class ScoredChunk:
    """One chunk's model input and what the model said about it (for the prediction log)."""

    first_row: int
    frame: pd.DataFrame
    proba: npt.NDArray[np.float64]
    levels: list[str]
    scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScoringResult:
    rows: int
    chunks: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int], None]  # (done, total) in the reader's unit
OnChunk = Callable[[ScoredChunk], None]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_output_names(names: list[str]) -> None:
    taken = [name for name in OUTPUT_COLUMNS if name in names]
    if taken:
        raise BatchInputError("the input already has column(s) named " + ", ".join(taken)
                              + ": rename them, the output adds its own")


def output_schema(schema: pa.Schema) -> pa.Schema:
    """The input's columns (features with their checked types), then the predictions."""
    check_output_names(schema.names)
    fields = [pa.field(f.name, _FEATURE_TYPES[BY_NAME[f.name].kind]) if f.name in BY_NAME else f
              for f in schema]
    return pa.schema([*fields, pa.field("level", pa.string()), pa.field("score", pa.float64()),
                      *(pa.field(name, pa.float64()) for name in PROBABILITY_COLUMNS)])


def checked_chunks(chunks: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.RecordBatch, CheckedChunk]]:
    first_row = 1
    for batch in chunks:
        yield batch, check_chunk(batch, first_row)
        first_row += batch.num_rows


def score_chunk(model: LoadedModel, batch: pa.RecordBatch, checked: CheckedChunk, first_row: int,
                schema: pa.Schema) -> tuple[pa.RecordBatch, ScoredChunk]:
    frame = checked.frame()
    proba = model.predict_proba(frame)
    levels = model.levels_of(proba)
    scores = score_of(proba)
    columns = [checked.features.get(name, batch.column(name)) for name in batch.schema.names]
    columns += [pa.array(levels, pa.string()), pa.array(scores),
                *(pa.array(np.ascontiguousarray(proba[:, i])) for i in range(len(LEVELS)))]
    return (pa.RecordBatch.from_arrays(columns, schema=schema),
            ScoredChunk(first_row, frame, proba, levels, scores))


def score_file(model: LoadedModel, source: Path, target: Path, *, input_format: Format,
               output_format: Format, chunk_rows: int, progress: Progress | None = None,
               on_chunk: OnChunk | None = None) -> ScoringResult:
    """Score every row of ``source`` into ``target``; ``target`` appears only if all rows did."""
    started = time.perf_counter()
    reader = open_input(source, input_format, chunk_rows)
    rows = chunks = 0
    # Chunk n+1 is read and checked in a thread while chunk n is predicted and written.
    ahead = prefetch(lambda: checked_chunks(reader.chunks))
    try:
        check_columns(reader.schema.names)
        schema = output_schema(reader.schema)
        with atomic_output(target, output_format, schema) as writer:
            if progress is not None:
                progress(0, reader.total)
            for batch, checked in ahead:
                scored, chunk = score_chunk(model, batch, checked, rows + 1, schema)
                writer.write(scored)
                if on_chunk is not None:
                    on_chunk(chunk)
                rows += batch.num_rows
                chunks += 1
                if progress is not None:
                    progress(reader.position(), reader.total)
    finally:
        ahead.close()  # stops and joins the reading thread before its file is closed
        reader.close()
    return ScoringResult(rows=rows, chunks=chunks, seconds=time.perf_counter() - started)
