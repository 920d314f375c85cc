"""The one place where driver errors become ``DatabaseUnavailable``.

``unit_of_work`` opens a transaction (commit on success, rollback on error); ``read_only`` a plain
connection. Either turns an outage (refused or dropped connection, timeout) into
``DatabaseUnavailable`` with the caller's message, so no service writes its own ``except``.
A constraint violation is an answer from a working database, not an outage: it passes through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import DB_ERRORS
from app.errors import DatabaseUnavailable

DEFAULT_MESSAGE = "the database is unavailable; retry shortly"


@asynccontextmanager
async def unavailable_as(message: str = DEFAULT_MESSAGE) -> AsyncIterator[None]:
    """Translate outage errors raised inside the block (for work that is not one connection)."""
    try:
        yield
    except IntegrityError:
        raise
    except DB_ERRORS as exc:
        raise DatabaseUnavailable(message) from exc


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine, message: str = DEFAULT_MESSAGE) -> AsyncIterator[AsyncConnection]:
    """A transaction: committed when the block ends, rolled back when it raises."""
    async with unavailable_as(message), engine.begin() as conn:
        yield conn


@asynccontextmanager
async def read_only(engine: AsyncEngine, message: str = DEFAULT_MESSAGE) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (no transaction is committed)."""
    async with unavailable_as(message), engine.connect() as conn:
        yield conn
