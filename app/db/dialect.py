"""The one seam where Postgres and SQLite differ: idempotent bulk inserts (INSERT or COPY), time
buckets, transaction-scoped locks, and which driver errors mean "the database refuses this data"."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy import ColumnElement, Float, Integer, Table, cast, extract, func, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Row = dict[str, Any]

# Errors that mean the data itself is refused; the same write would fail the same way forever.
DATA_REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.DataError, sa_exc.IntegrityError,
    asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,  # e.g. a value too big for an index row
    asyncpg.exceptions._base.DataError,  # asyncpg's own check of an argument's type or value
    sqlite3.DataError, sqlite3.IntegrityError,
    UnicodeError, ValueError, TypeError, KeyError,  # the row could not even be built or bound
)


def is_postgres(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "postgresql"


async def insert_ignoring_duplicates(conn: AsyncConnection, table: Table, rows: list[Row]) -> None:
    """Multi-row insert where rows whose primary key already exists are skipped (replay-safe)."""
    if not rows:
        return
    key = list(table.primary_key.columns)
    if is_postgres(conn):
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=key)
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=key)
    await conn.execute(stmt, rows)


async def copy_lines_ignoring_duplicates(
    engine: AsyncEngine, table: Table, lines: Sequence[bytes]
) -> None:
    """Postgres only: records given as JSON lines (one object per line, newline-terminated, keys
    named like the columns) written in one transaction, skipping rows whose primary key exists.

    The lines are COPYed as they are into a one-column ``jsonb`` session temp table (emptied at
    each commit), and one INSERT ... SELECT turns each into a row of the table
    (``jsonb_populate_record``) ON CONFLICT DO NOTHING; COPY cannot skip conflicts itself, hence
    the staging table. No tuple is built or encoded in Python: the prediction log's drainer hands
    its spool lines straight over (building binary COPY tuples was most of its share of the event
    loop). Keys that are not columns are ignored; a column a line lacks takes its server
    default, else NULL.
    """
    if not lines:
        return
    stage = f"_stage_lines_{table.name}"
    column_list = ", ".join(f'"{c.name}"' for c in table.columns)
    values = ", ".join(
        f'COALESCE(r."{c.name}", {c.server_default.arg})'  # type: ignore[attr-defined]
        if c.server_default is not None else f'r."{c.name}"'
        for c in table.columns
    )
    # COPY's text format: a backslash escapes, so JSON's own backslashes are doubled. JSON has
    # no raw tab, carriage return or newline inside a value, so nothing else needs escaping.
    data = b"".join(lines).replace(b"\\", b"\\\\")
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None  # asyncpg's connection under SQLAlchemy's adapter
        async with raw.transaction():
            await raw.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (line jsonb) ON COMMIT DELETE ROWS'
            )
            # A memoryview: asyncpg would take bytes for a file name.
            await raw.copy_to_table(stage, source=memoryview(data), format="text")
            await raw.execute(
                f'INSERT INTO "{table.name}" ({column_list}) SELECT {values} FROM "{stage}", '
                f'jsonb_populate_record(NULL::"{table.name}", line) AS r ON CONFLICT DO NOTHING'
            )


async def ingest_ignoring_duplicates(
    engine: AsyncEngine, table: Table, rows: list[Row], method: str = "copy"
) -> None:
    """Write ``rows`` in one transaction, skipping ids already stored (replaying is harmless).

    ``method`` picks COPY or a multi-row INSERT on Postgres; SQLite always gets batched inserts.
    Driver errors are raised as they are: the caller tells a refusal from an outage by them.
    """
    if is_postgres(engine) and method == "copy":
        lines = [orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows]
        await copy_lines_ignoring_duplicates(engine, table, lines)
        return
    async with engine.begin() as conn:
        await insert_ignoring_duplicates(conn, table, rows)


async def lock_until_commit(conn: AsyncConnection, key: str) -> None:
    """Serialise transactions that name the same ``key`` until this one ends.

    Postgres: a transaction-scoped advisory lock. SQLite needs none: it admits one writer at a
    time, and the write that follows takes the database lock.
    """
    if is_postgres(conn):
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def bucket_index(
    column: ColumnElement[Any], start_epoch: float, seconds: float, dialect_name: str
) -> ColumnElement[Any]:
    """SQL for ``floor((epoch(column) - start_epoch) / seconds)`` on either database."""
    if dialect_name == "postgresql":
        return func.floor((extract("epoch", column) - start_epoch) / seconds)
    # SQLite keeps timestamps as UTC text; julianday() reads it. Values are >= 0 here, so a cast floors.
    return cast(((func.julianday(column) - 2440587.5) * 86400.0 - start_epoch) / seconds, Integer)


def json_number(column: ColumnElement[Any], key: str, dialect_name: str) -> ColumnElement[Any]:
    """SQL for the number stored under ``key`` of a JSON object column, on either database."""
    if dialect_name == "postgresql":
        return cast(column.op("->>")(key), Float)
    return cast(func.json_extract(column, f"$.{key}"), Float)


def json_text(column: ColumnElement[Any], key: str, dialect_name: str) -> ColumnElement[Any]:
    """SQL for the string stored under ``key`` of a JSON object column, on either database."""
    if dialect_name == "postgresql":
        return column.op("->>")(key)
    return func.json_extract(column, f"$.{key}")
