"""Real databases for tests: a migrated SQLite file, or a Postgres database of a test's own.

Migrating Postgres takes a while, so it is done once per session into a template database;
each test still gets a database of its own, created as a copy of the template (isolation is
kept: nothing is shared but the empty, migrated schema). The template is dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from app.db.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("FS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_template: str | None = None


def pg_url_of(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def sqlite_url(directory: Path, name: str = "predictions.db") -> str:
    return f"sqlite+aiosqlite:///{directory / name}"


async def _admin(sql: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


async def _migrated_template() -> str:
    """The session's migrated template database, made at the first use."""
    global _template
    if _template is None:
        name = f"fs_test_template_{uuid.uuid4().hex[:12]}"
        await _admin(f'CREATE DATABASE "{name}"')
        try:
            await upgrade(pg_url_of(name))
        except BaseException:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            raise
        _template = name
    return _template


async def drop_template() -> None:
    """Called once at the end of the session (tests/conftest.py)."""
    global _template
    if _template is not None:
        name, _template = _template, None
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, migrated Postgres database of the caller's own, dropped afterwards."""
    template = await _migrated_template()
    name = f"fs_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield pg_url_of(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
