"""The real command line and the real server process."""

from __future__ import annotations

import subprocess
import sys

import httpx
from mlflow import MlflowClient

from tests.support.factories import valid_items
from tests.support.live_server import LiveServer, clean_env
from tests.support.settings import make_settings

CLI = [sys.executable, "-m", "app.cli"]


def test_bootstrap_is_idempotent(tmp_path):
    env = clean_env(tmp_path)
    first = subprocess.run([*CLI, "bootstrap"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "training the demo model" in first.stderr
    second = subprocess.run([*CLI, "bootstrap"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "nothing to train" in second.stderr

    settings = make_settings(tmp_path)
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    versions = client.search_model_versions("name = 'future-skills-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("future-skills-model", "production").version) == "1"


def test_data_generate_and_train_from_csv(tmp_path):
    env = clean_env(tmp_path)
    csv = tmp_path / "data.csv"
    gen = subprocess.run([*CLI, "data", "generate", "--rows", "2000", "--seed", "3", "--out", str(csv)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    assert len(csv.read_text().splitlines()) == 2001
    train = subprocess.run([*CLI, "train", "--data", str(csv)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert "f1_macro" in train.stdout
    client = MlflowClient(make_settings(tmp_path).tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("model-training").experiment_id])[0]
    assert run.data.params["rows"] == "2000"


def test_serve_runs_a_real_server(registry_dir, tmp_path):
    server = LiveServer(registry_dir, f"sqlite:///{tmp_path / 'p.db'}").start()
    try:
        response = httpx.post(f"{server.base_url}/v1/predictions", json={"items": valid_items(2)}, timeout=10)
        assert response.status_code == 200
        assert response.json()["model"]["version"] == "1"
        assert "fs_predictions_total" in httpx.get(f"{server.base_url}/metrics", timeout=5).text
    finally:
        code = server.stop()
    assert code == 0, server.output


def test_bad_settings_are_one_line_each_naming_the_variable_and_exit_2(tmp_path):
    """A 7-character admin token used to be an 82-line traceback at start."""
    env = clean_env(tmp_path, FS_ADMIN_TOKENS="alice:secret7", FS_PORT="eighty",
                    FS_DRIFT_MIN_ROWS="0")
    for command in (["serve"], ["models", "list"], ["db", "upgrade"]):
        result = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "configuration error: FS_PORT: Input should be a valid integer, unable to parse string "
            "as an integer",
            "configuration error: FS_ADMIN_TOKENS: admin token 'alice' is shorter than 8 characters",
            "configuration error: FS_DRIFT_MIN_ROWS: Input should be greater than or equal to 1",
        ], command
        assert "secret7" not in result.stderr and "eighty" not in result.stderr


def test_db_purge_dry_run_counts_and_deletes_nothing(tmp_path):
    import asyncio
    from datetime import timedelta

    from app.db.migrate import upgrade
    from app.ml.synthetic import generate
    from tests.support.monitoring import (
        count_predictions,
        insert_feedback,
        insert_predictions,
        now,
        prediction_rows,
    )

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    frame = generate(5, seed=1)
    old = prediction_rows(frame.head(3), ["LOW"] * 3, now() - timedelta(days=100))
    new = prediction_rows(frame.tail(2), ["LOW"] * 2, now() - timedelta(days=1))

    async def prepare():
        await upgrade(db_url)
        await insert_predictions(db_url, old + new)
        await insert_feedback(db_url, [(old[0]["id"], "HIGH", now()), (new[0]["id"], "HIGH", now())])

    asyncio.run(prepare())
    env = clean_env(tmp_path, DATABASE_URL=db_url)
    purge = [*CLI, "db", "purge", "--older-than", "90d", "--force"]  # below the 180d minimum
    dry = subprocess.run([*purge, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert ("would delete (dry run) 3 predictions, 1 feedback rows, 0 reviews and 0 explanations "
            "older than 90d") in dry.stderr
    assert asyncio.run(count_predictions(db_url)) == 5
    done = subprocess.run(purge, env=env, capture_output=True, text=True, timeout=60)
    assert "deleted 3 predictions, 1 feedback rows, 0 reviews and 0 explanations" in done.stderr
    assert asyncio.run(count_predictions(db_url)) == 2
