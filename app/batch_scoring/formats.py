"""Reading and writing tables chunk by chunk: CSV (pyarrow's streaming reader) and Parquet.

Memory stays bounded by the chunk: the readers yield record batches of at most ``chunk_rows``
rows, the writers append each one, and nothing holds the whole file. Output goes to a hidden
file beside the target and is renamed over it only when every row is written, so a failed run
leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.batch_scoring.errors import BatchInputError

Format = Literal["csv", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "parquet")
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_BLOCK_BYTES = 4 << 20  # one read of the CSV parser; chunks are cut from these blocks


def format_of(path: Path, override: str | None = None) -> Format:
    """``override`` if given, else the file's extension: .csv, .parquet or .pq."""
    name = override if override is not None else _SUFFIXES.get(path.suffix.lower())
    for known in FORMATS:
        if name == known:
            return known
    raise BatchInputError(
        f"cannot tell the format of {path.name}: use a .csv, .parquet or .pq file, or name the format"
    )


@dataclass
class Reader:
    """An open input: its columns, its size in ``unit`` and the chunks."""

    schema: pa.Schema
    total: int
    unit: Literal["rows", "bytes"]
    chunks: Iterator[pa.RecordBatch]
    position: Callable[[], int]  # rows (Parquet) or bytes (CSV) read so far
    close: Callable[[], None]


def rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``rows`` rows (the last one may be shorter), whatever the source's cut."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == rows:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, held = [], 0
    if held:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        return next(csv.reader(f), [])


_COLUMN_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


def _parse_error(exc: pa.ArrowInvalid, rows_read: int) -> BatchInputError:
    """pyarrow's message quotes the offending line; ours says only what is wrong and where."""
    where = f"after row {rows_read}" if rows_read else "in its first rows"
    counts = _COLUMN_COUNT.search(str(exc))
    if counts:
        return BatchInputError(f"the CSV file cannot be read {where}: a line has {counts.group(2)} "
                               f"fields where the header has {counts.group(1)}")
    if "UTF8" in str(exc) or "UTF-8" in str(exc):
        return BatchInputError(f"the CSV file cannot be read {where}: it is not valid UTF-8 text")
    return BatchInputError(f"the CSV file cannot be read {where}: it is not well-formed CSV")


def open_csv(path: Path, chunk_rows: int) -> Reader:
    """Every column is read as text: features are checked and typed by the scorer; other columns
    are copied through exactly as written. An empty cell is a missing value."""
    names = _header(path)
    if not names:
        raise BatchInputError("the CSV file is empty: a header row naming the columns is expected")
    source = pa.OSFile(str(path))
    try:
        stream = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=[""], strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        source.close()
        raise _parse_error(exc, 0) from None

    size = path.stat().st_size
    read = [0]  # bytes the parser has taken (it reads ahead of the chunk being scored)

    def batches() -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            while True:
                try:
                    batch = stream.read_next_batch()
                except StopIteration:
                    read[0] = size
                    return
                except pa.ArrowInvalid as exc:
                    raise _parse_error(exc, rows) from None
                read[0] = source.tell()
                rows += batch.num_rows
                yield batch
        finally:
            source.close()

    return Reader(schema=stream.schema, total=size, unit="bytes",
                  chunks=rechunk(batches(), chunk_rows), position=lambda: read[0],
                  close=source.close)


def open_parquet(path: Path, chunk_rows: int) -> Reader:
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError):
        raise BatchInputError("the input is not a readable Parquet file") from None
    done = [0]

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in file.iter_batches(batch_size=chunk_rows):
                done[0] += batch.num_rows
                yield batch
        finally:
            file.close()

    return Reader(schema=file.schema_arrow, total=file.metadata.num_rows, unit="rows",
                  chunks=rechunk(batches(), chunk_rows), position=lambda: done[0],
                  close=file.close)


def column_names(path: Path, fmt: Format) -> list[str]:
    """The input's columns without reading its rows (a CSV's header, a Parquet file's schema)."""
    if fmt == "csv":
        return _header(path)
    try:
        names: list[str] = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError):
        raise BatchInputError("the input is not a readable Parquet file") from None
    return names


def open_input(path: Path, fmt: Format, chunk_rows: int) -> Reader:
    if not path.is_file():
        raise BatchInputError(f"the input file {path} does not exist")
    return open_csv(path, chunk_rows) if fmt == "csv" else open_parquet(path, chunk_rows)


class Writer(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


def _writer(path: Path, fmt: Format, schema: pa.Schema) -> Writer:
    writer: Writer = (pa_csv.CSVWriter(str(path), schema) if fmt == "csv"
                      else pq.ParquetWriter(str(path), schema))
    return writer


@contextlib.contextmanager
def atomic_output(path: Path, fmt: Format, schema: pa.Schema) -> Iterator[Writer]:
    """A writer on a hidden file beside ``path``, renamed to ``path`` when the body succeeds and
    deleted when it fails: the target is either the whole output or untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = _writer(partial, fmt, schema)
    try:
        yield writer
        writer.close()
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        partial.unlink(missing_ok=True)
        raise
