"""Fixtures: a real MLflow registry with a really trained model, real databases, real HTTP.

Only fixture declarations live here; what they use is in tests/support/ (settings factory,
databases, the running app, data factories), and tests import it from there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

# Tests build their settings explicitly; nothing from the caller's environment may leak in.
# (Before anything of the app is imported: settings read the environment.)
for _key in [k for k in os.environ if k.startswith("FS_") and k != "FS_TEST_PG_DSN"]:
    del os.environ[_key]
for _key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DATABASE_URL"):
    os.environ.pop(_key, None)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import httpx  # noqa: E402
import pytest  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402

# Still imported from here by tests/api/test_fuzz_hostile.py and tests/monitoring (their owners
# are editing them); those imports move to tests.support.* with their next commit.
from tests.support.databases import (  # noqa: E402
    PG_ADMIN_DSN,  # noqa: F401
    drop_template,
    pg_database,
    sqlite_url,
)

# Fixtures defined in support modules, registered here so every test can take them.
from tests.support.lifecycle import lifecycle_dir, lifecycle_template  # noqa: E402,F401
from tests.support.pgcluster import cluster_db, pg_cluster  # noqa: E402,F401
from tests.support.running_app import RunningApp  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    asyncio.run(drop_template())


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose MLflow registry holds one trained, Production-aliased model version."""
    from app.training.train import train

    data_dir = tmp_path_factory.mktemp("registry")
    settings = make_settings(data_dir)
    settings.ensure_dirs()
    asyncio.run(_train_once(settings, train))
    return data_dir


async def _train_once(settings: Settings, train: Callable[..., Awaitable[object]]) -> None:
    from app.container import build

    await upgrade(settings.db_url)
    async with build(settings) as container:
        await train(container)


@pytest.fixture
def settings(registry_dir: Path, tmp_path: Path) -> Settings:
    """The shared registry, with a prediction database of this test's own (SQLite)."""
    return make_settings(registry_dir, database_url=sqlite_url(tmp_path))


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A migrated Postgres database of this test's own."""
    async with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test that takes this runs once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        await upgrade(url)
        yield url
    else:
        async with pg_database() as url:
            yield url


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with RunningApp(settings) as client:
        yield client
