"""Reading the current window from the prediction log without loading the world.

Only the 12 feature values, the predicted level and its probability leave the database. On Postgres they are
extracted from the JSONB column in SQL and streamed with ``COPY ... TO STDOUT`` into an Arrow
table (no Python object per value). Extracting the JSON fields and sending them as CSV take
Postgres about 2.3 s of CPU per million rows, most of a report's time, so the window is cut into
equal time slices read side by side on their own connections (``FS_DRIFT_READ_CONNECTIONS``,
one backend each) and the slices' tables are concatenated. SQLite, the embedded store, is read in
chunks. When the window holds more rows than the cap, a uniform Bernoulli sample of about
``cap`` rows is read instead, and the report says so.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import DateTime, bindparam, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import is_postgres
from app.db.session import read_only
from app.db.tables import Prediction
from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS
from app.monitoring.data import CONFIDENCE_COLUMN, LEVEL_COLUMN, Window

_COLUMNS = (*FEATURE_NAMES, LEVEL_COLUMN, CONFIDENCE_COLUMN)
_SCHEMA = pa.schema(
    [(name, pa.string() if name in CATEGORICAL else pa.float64()) for name in FEATURE_NAMES]
    + [(LEVEL_COLUMN, pa.string()), (CONFIDENCE_COLUMN, pa.float64())]
)
_SQLITE_CHUNK = 20_000
_UNREADABLE = "the prediction log cannot be read right now"


def _pg_select(sample: bool) -> str:
    # Numbers leave as their JSON text: no numeric parse and float print in Postgres; Arrow parses.
    # The confidence is the predicted level's stored probability, also as text (the level is the
    # probabilities' argmax: computing the largest of three costs a quarter of the backend's CPU).
    confidence = ("COALESCE(probabilities->>level, GREATEST(" + ", ".join(
        f"(probabilities->>'{level}')::float8" for level in LEVELS) + ")::text)")
    cols = [*(f"features->>'{name}'" for name in FEATURE_NAMES), "level", confidence]
    where = "model_name = $1 AND model_version = $2 AND created_at >= $3 AND created_at < $4"
    if sample:
        where += " AND random() < $5"
    return f"SELECT {', '.join(cols)} FROM prediction WHERE {where} LIMIT $6" if sample else \
        f"SELECT {', '.join(cols)} FROM prediction WHERE {where}"


async def count_window(engine: AsyncEngine, model_name: str, model_version: str,
                       start: datetime, end: datetime) -> int:
    stmt = select(func.count()).select_from(Prediction).where(
        Prediction.model_name == model_name, Prediction.model_version == model_version,
        Prediction.created_at >= start, Prediction.created_at < end,
    )
    async with read_only(engine, _UNREADABLE) as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def read_window(
    engine: AsyncEngine, model_name: str, model_version: str, start: datetime, end: datetime,
    max_rows: int, connections: int = 1,
) -> Window:
    """The window's rows; on Postgres read as ``connections`` time slices side by side."""
    total = await count_window(engine, model_name, model_version, start, end)
    sample = total > max_rows
    fraction = max_rows / total if sample else 1.0
    if is_postgres(engine):
        slices = time_slices(start, end, connections)
        table = pa.concat_tables(await asyncio.gather(*(
            _read_postgres(engine, model_name, model_version, a, b, sample, fraction, max_rows)
            for a, b in slices
        )))
        if table.num_rows > max_rows:  # each slice was capped alone: a uniform subset of them all
            keep = np.random.default_rng().choice(table.num_rows, max_rows, replace=False)
            table = table.take(np.sort(keep))
    else:
        table = await _read_sqlite(engine, model_name, model_version, start, end, sample,
                                   fraction, max_rows)
    return Window(table=table, start=start, end=end, rows_in_window=total, sampled=sample,
                  max_rows=max_rows)


def time_slices(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into ``parts`` consecutive half-open slices of equal length (fewer
    when the span is too short to cut), together exactly the window."""
    step = (end - start) / max(parts, 1)
    if parts <= 1 or step <= timedelta(0):
        return [(start, end)]
    bounds = [start + step * i for i in range(parts)] + [end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


async def _read_postgres(engine: AsyncEngine, model_name: str, model_version: str, start: datetime,
                         end: datetime, sample: bool, fraction: float, limit: int) -> pa.Table:
    query = _pg_select(sample)
    args: list[object] = [model_name, model_version, start, end]
    if sample:
        args += [fraction, limit]
    # Arrow owns the growing buffer, so the parser reads it in place (no copy of the CSV text).
    buffer = pa.BufferOutputStream()

    async def sink(chunk: bytes) -> None:
        buffer.write(chunk)

    async with read_only(engine, _UNREADABLE) as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # asyncpg's connection: untyped
        await driver.copy_from_query(query, *args, output=sink, format="csv")
    return await asyncio.to_thread(parse_csv, buffer.getvalue())


def parse_csv(data: pa.Buffer | bytes) -> pa.Table:
    if not len(data):
        return _SCHEMA.empty_table()
    return _parse(pa.BufferReader(data))


def _parse(source: pa.BufferReader) -> pa.Table:
    return pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=list(_COLUMNS)),
        convert_options=pacsv.ConvertOptions(
            column_types=_SCHEMA, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )


async def _read_sqlite(engine: AsyncEngine, model_name: str, model_version: str, start: datetime,
                       end: datetime, sample: bool, fraction: float, limit: int) -> pa.Table:
    confidence = ("coalesce(json_extract(probabilities, '$.' || level), max(" + ", ".join(
        f"json_extract(probabilities, '$.{level}')" for level in LEVELS) + "))")
    cols = ", ".join([*(f"json_extract(features, '$.{name}')" for name in FEATURE_NAMES), "level",
                      confidence])
    where = ("model_name = :name AND model_version = :version AND created_at >= :start "
             "AND created_at < :end")
    params: dict[str, object] = {"name": model_name, "version": model_version, "start": start,
                                 "end": end}
    if sample:
        # random() is a signed 64-bit integer: map it to [0, 1).
        where += " AND (random() / 18446744073709551616.0 + 0.5) < :fraction"
        params["fraction"] = fraction
    sql = f"SELECT {cols} FROM prediction WHERE {where}" + (" LIMIT :limit" if sample else "")
    if sample:
        params["limit"] = limit
    rows: list[Row[Any]] = []
    async with read_only(engine, _UNREADABLE) as conn:
        # Bound as DateTime so they are stored-format text, exactly as the log wrote them.
        stmt = text(sql).bindparams(bindparam("start", type_=DateTime(timezone=True)),
                                    bindparam("end", type_=DateTime(timezone=True)))
        result = await conn.stream(stmt, params)
        async for chunk in result.partitions(_SQLITE_CHUNK):
            rows.extend(chunk)
    return await asyncio.to_thread(_rows_to_table, rows)


def _rows_to_table(rows: list[Row[Any]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in _COLUMNS]
    arrays = [
        pa.array(list(values) if field.type == pa.string() else [float(v) for v in values], field.type)
        for values, field in zip(columns, _SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


