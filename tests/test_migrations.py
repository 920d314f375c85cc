"""The Alembic migrations build exactly the schema the ORM tables describe, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.tables import Base


async def _differences(url: str) -> list:
    await upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await engine.dispose()


async def test_sqlite_schema_matches_the_tables(tmp_path):
    assert await _differences(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}") == []


@pytest.mark.postgres
async def test_postgres_schema_matches_the_tables(pg_url):
    assert await _differences(pg_url) == []
