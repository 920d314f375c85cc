"""Fixtures for the lifecycle tests (registered in ``tests/conftest.py``): a private registry
with two really trained versions.

The template is trained once per session (never the shared ``registry_dir``): version 1 is a weak
forest (Production, 1.0.0), version 2 a better one with other hyperparameters (1.1.0, not promoted).
Each test gets its own copy of the registry database, model cache and prediction database, so
tests can move aliases freely; artifacts are read from the template.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from app.config import AdminSettings, LifecycleSettings, ModelSettings, Settings, TrainingSettings
from app.db.migrate import upgrade
from tests.support.settings import make_settings

MODEL = "future-skills-model"
ADMIN_TOKEN = "alice-secret-token-0001"
CI_TOKEN = "ci-secret-token-0002"
WEAK = TrainingSettings(rows=600, n_estimators=1, reference_rows=200)
GOOD = TrainingSettings(rows=2000, n_estimators=10, reference_rows=200)


@pytest.fixture(scope="session")
def lifecycle_template(tmp_path_factory) -> Path:
    from app.container import build as build_container
    from app.training.train import train

    data_dir = tmp_path_factory.mktemp("lifecycle-template")

    async def build() -> None:
        first = make_settings(data_dir, training=WEAK)
        first.ensure_dirs()
        await upgrade(first.db_url)
        async with build_container(first) as container:
            await train(container, seed=1)
        async with build_container(make_settings(data_dir, training=GOOD)) as container:
            await train(container, seed=2)

    asyncio.run(build())
    return data_dir


def lifecycle_settings(data_dir: Path, poll: float = 0.5, **overrides) -> Settings:
    fields = {
        "model": ModelSettings(poll_interval_s=poll),
        "admin": AdminSettings(admin_tokens={"alice": ADMIN_TOKEN, "ci": CI_TOKEN}),
        "lifecycle": LifecycleSettings(),
        "training": GOOD,
    }
    return make_settings(data_dir, **(fields | overrides))


@pytest.fixture
def lifecycle_dir(lifecycle_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the template registry (database only; artifacts stay shared)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy2(lifecycle_template / "mlflow.db", data_dir / "mlflow.db")
    return data_dir


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class CapturedLogs(logging.Handler):
    """Every log line of the process while installed (to check that no secret is ever logged)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)

    def __enter__(self) -> CapturedLogs:
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)
