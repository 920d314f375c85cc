"""Training's first version becomes Production through the lifecycle service, audited in the same
move; importing training or the registry changes nothing in the process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app.config import Settings
from app.db.engine import create_engine
from app.db.tables import ModelPromotion


def test_the_first_version_is_made_production_by_an_audited_move(registry_dir: Path) -> None:
    settings = Settings(data_dir=registry_dir)

    async def rows() -> list[dict[str, object]]:
        engine = create_engine(settings.db_url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(select(ModelPromotion.__table__))
                return [dict(r) for r in result.mappings().all()]
        finally:
            await engine.dispose()

    audit = asyncio.run(rows())
    assert [(a["actor"], a["action"], a["from_version"], a["to_version"], a["outcome"], a["reason"],
             a["detail"]) for a in audit] == [
        ("training", "auto", None, "1", "success", "first version of the model", "semver 1.0.0")]


def test_importing_training_and_the_registry_has_no_side_effects() -> None:
    quiet = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
             "MPLBACKEND")
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    probe = (
        "import os, matplotlib\n"
        "import app.registry.client, app.training.train, app.cli.main\n"
        f"print([k for k in {quiet!r} if k in os.environ])\n"
        "print(matplotlib.rcParams._get_backend_or_none())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "None"]  # no variable set, no backend chosen
