"""The Alembic migrations build exactly the schema the ORM tables describe, on both databases;
a database behind the code is reported at start."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from asgi_lifespan import LifespanManager

from app.db.engine import create_engine
from app.db.migrate import pending_revisions, upgrade
from app.db.tables import Base
from app.main import create_app
from tests.support.lifecycle import CapturedLogs
from tests.support.settings import make_settings


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


async def test_a_database_behind_the_code_is_named_at_start(registry_dir, tmp_path):
    """The service starts on an older schema (predictions are spooled) but says what to run."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url, "0001")
    engine = create_engine(url)
    try:
        assert await pending_revisions(engine) == ["0002", "0003", "0004"]
        app = create_app(make_settings(registry_dir, database_url=url))
        with CapturedLogs() as logs:
            async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
                pass
        assert any("lacks 3 migration(s) (0002, 0003, 0004)" in line and "future-skills db upgrade" in line
                   for line in logs.lines), logs.lines
        await upgrade(url)
        assert await pending_revisions(engine) == []
    finally:
        await engine.dispose()
