"""Engine and session factory, built by the composition root (never at import time)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

# What a database outage raises (refused connection, dropped connection, timeout);
# app.db.session turns these into DatabaseUnavailable (503) instead of a 500.
DB_ERRORS = (OSError, DBAPIError, OperationalError, InterfaceError, asyncio.TimeoutError)


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        # WAL lets readers run during batch writes. The mode is stored in the file, so it is set
        # only when the file is not in it yet: setting it needs an exclusive lock and fails at
        # once ("database is locked", no busy wait) while another connection holds any lock.
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                except Exception as exc:  # the driver's OperationalError, adapted or not
                    # Connections opened together all see the old mode; one switch wins and the
                    # rest are refused. The mode is the file's, so the loser has it too.
                    if "locked" not in str(exc).lower():
                        raise
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
