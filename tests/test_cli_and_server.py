"""The real command line and the real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from mlflow import MlflowClient

from tests.conftest import make_settings
from tests.helpers import valid_items

CLI = [sys.executable, "-m", "app.cli"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "MLFLOW_TRACKING", "DATABASE_URL"))}
    env |= {
        "FS_DATA_DIR": str(data_dir),
        "FS_TRAIN_ROWS": "3000",
        "FS_TRAIN_N_ESTIMATORS": "30",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env | extra


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bootstrap_is_idempotent(tmp_path):
    env = _env(tmp_path)
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
    env = _env(tmp_path)
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
    port = _free_port()
    env = _env(registry_dir, DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and proc.poll() is None, "server did not become ready"
            time.sleep(0.3)
        response = httpx.post(f"{base}/v1/predictions", json={"items": valid_items(2)}, timeout=10)
        assert response.status_code == 200
        assert response.json()["model"]["version"] == "1"
        assert "fs_predictions_total" in httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
