"""Shared fixtures: a real MLflow registry with a really trained model, real databases, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

# Tests build their settings explicitly; nothing from the caller's environment may leak in.
for _key in [k for k in os.environ if k.startswith("FS_") and k != "FS_TEST_PG_DSN"]:
    del os.environ[_key]
for _key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DATABASE_URL"):
    os.environ.pop(_key, None)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402

from app.config import ModelSettings, Settings, TrainingSettings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.main import create_app  # noqa: E402

PG_ADMIN_DSN = os.environ.get("FS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# Small but real: the tests need a trained forest, not the full 20k-row demo model.
TEST_TRAINING = {"rows": 4000, "n_estimators": 40, "reference_rows": 1000}


def make_settings(data_dir: Path, **overrides) -> Settings:
    """Settings on a private data dir (registry, artifacts, cache), fast polling, small training."""
    fields = {
        "data_dir": data_dir,
        "training": TrainingSettings(**TEST_TRAINING),
        "model": ModelSettings(poll_interval_s=0.5),
    }
    fields.update(overrides)
    return Settings(**fields)


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory) -> Path:
    """A data dir whose MLflow registry holds one trained, Production-aliased model version."""
    from app.training.train import train

    data_dir = tmp_path_factory.mktemp("registry")
    settings = make_settings(data_dir)
    settings.ensure_dirs()
    asyncio.run(_train_once(settings, train))
    return data_dir


async def _train_once(settings: Settings, train) -> None:
    await upgrade(settings.db_url)
    await train(settings)


@pytest.fixture
def settings(registry_dir: Path, tmp_path: Path) -> Settings:
    """The shared registry, with a prediction database of this test's own (SQLite)."""
    return make_settings(registry_dir, database_url=f"sqlite+aiosqlite:///{tmp_path / 'predictions.db'}")


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, migrated Postgres database, dropped afterwards."""
    name = f"fs_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        await upgrade(url)
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """Each test that takes this runs once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'predictions.db'}"
        await upgrade(url)
        yield url
    else:
        async with pg_database() as url:
            yield url


async def wait_ready(client: httpx.AsyncClient, timeout: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get("/health/ready")
        if response.status_code == 200:
            return response.json()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"service not ready after {timeout}s: {response.text}")
        await asyncio.sleep(0.1)


async def migrated(settings: Settings) -> Settings:
    await upgrade(settings.db_url)
    return settings


class RunningApp:
    """An app with its lifespan running and an HTTP client talking to it through ASGI."""

    def __init__(self, settings: Settings, wait: bool = True) -> None:
        self.settings = settings
        self.wait = wait
        self.app = create_app(settings)

    async def __aenter__(self) -> httpx.AsyncClient:
        await upgrade(self.settings.db_url)
        self._lifespan = LifespanManager(self.app, startup_timeout=60, shutdown_timeout=60)
        manager = await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://testserver"
        )
        if self.wait:
            await wait_ready(self.client)
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(*exc)

    @property
    def container(self):
        return self.app.state.container


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with RunningApp(settings) as client:
        yield client


# The private Postgres cluster that failure tests stop and kill (tests/support/pgcluster.py).
# The model lifecycle tests' private registry (issue 3); registered here so it is built once.
from tests.support.lifecycle import lifecycle_dir, lifecycle_template  # noqa: E402,F401
from tests.support.pgcluster import cluster_db, pg_cluster  # noqa: E402, F401
