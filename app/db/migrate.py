"""Run Alembic migrations from code (``future-skills db upgrade``), as a one-shot step."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

import app
from alembic import command

_PROJECT_ROOT = Path(app.__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    config = Config(str(_PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_PROJECT_ROOT / "alembic"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def _upgrade(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade in a worker thread: Alembic's env runs its own event loop."""
    await asyncio.to_thread(_upgrade, url, revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    _upgrade(url, revision)


async def pending_revisions(engine: AsyncEngine) -> list[str]:
    """Migrations this code expects that the database has not had, oldest first."""
    async with engine.connect() as conn:
        current = await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())
    script = ScriptDirectory.from_config(alembic_config(""))
    revisions = list(script.iterate_revisions("heads", current))  # newest first, exclusive of current
    return [r.revision for r in reversed(revisions)]
