"""The one seam where Postgres and SQLite differ: idempotent bulk inserts."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ignoring_duplicates(conn: AsyncConnection, table: Table, rows: list[dict]) -> None:
    """Multi-row insert where rows whose primary key already exists are skipped (replay-safe)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=[table.c.id])
    await conn.execute(stmt, rows)


def bucket_index(column, start_epoch: float, seconds: float, dialect_name: str):
    """SQL for ``floor((epoch(column) - start_epoch) / seconds)`` on either database."""
    from sqlalchemy import Integer, cast, extract, func

    if dialect_name == "postgresql":
        return func.floor((extract("epoch", column) - start_epoch) / seconds)
    # SQLite keeps timestamps as UTC text; julianday() reads it. Values are >= 0 here, so a cast floors.
    return cast(((func.julianday(column) - 2440587.5) * 86400.0 - start_epoch) / seconds, Integer)
