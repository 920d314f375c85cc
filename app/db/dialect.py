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
