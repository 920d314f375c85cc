"""The real command line and the real server process."""

from __future__ import annotations

import subprocess
import sys

import httpx
from mlflow import MlflowClient

from tests.conftest import make_settings
from tests.helpers import valid_items
from tests.live_server import LiveServer, clean_env

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
    train = subprocess.run([*CLI, "train", "--data", str(csv)], env=env, capture_output=True, text=True, timeout=300)
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
