"""Several workers follow the registry on their own: each one switches within about one interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.lifecycle import MODEL, lifecycle_settings
from tests.support.procs import free_port as _free_port

POLL_S = 1.0


@pytest.mark.slow
def test_every_worker_serves_the_new_version_within_one_interval(lifecycle_dir):
    port = _free_port()
    hidden = ("FS_", "MLFLOW_TRACKING", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    env |= {"FS_DATA_DIR": str(lifecycle_dir), "FS_MODEL_POLL_INTERVAL_S": str(POLL_S),
            "MLFLOW_DISABLE_TELEMETRY": "true"}
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: [lines.append((time.monotonic(), line)) for line in proc.stdout],
                              daemon=True)
    reader.start()
    switched = lambda: [t for t, line in lines if f"serving {MODEL} version 2 (was 1)" in line]  # noqa: E731
    try:
        deadline = time.monotonic() + 90
        while sum(f"serving {MODEL} version 1" in line for _, line in lines) < 2:  # both workers up
            assert time.monotonic() < deadline and proc.poll() is None, "".join(line for _, line in lines)
            time.sleep(0.2)
        settings = lifecycle_settings(lifecycle_dir)
        moved_at = time.monotonic()
        MlflowClient(settings.tracking_uri, settings.registry_uri).set_registered_model_alias(
            MODEL, "production", "2")
        while len(switched()) < 2:
            assert time.monotonic() < moved_at + 30, "".join(line for _, line in lines)
            time.sleep(0.1)
        delays = [round(t - moved_at, 2) for t in switched()]
        print(f"two workers switched {delays} s after the alias moved (poll interval {POLL_S} s)")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(10):
                assert client.get("/health/ready").json()["model"]["version"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
