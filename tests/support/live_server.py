"""A real ``future-skills serve`` process for tests that need real HTTP (fuzzing, clients)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.procs import free_port


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any service settings, pointed at ``data_dir``."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("FS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABASE_URL"))
    }
    env |= {
        "FS_DATA_DIR": str(data_dir),
        "FS_WORKERS": "1",  # these tests reason about one process; multi-worker tests ask for more
        "FS_TRAIN_ROWS": "3000",
        "FS_TRAIN_N_ESTIMATORS": "30",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env | extra


class LiveServer:
    """Start, wait until ready, stop with SIGTERM; output kept for assertions."""

    def __init__(self, data_dir: Path, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(data_dir, DATABASE_URL=database_url, **env)
        self.proc: subprocess.Popen | None = None
        self.output = ""
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full pipe blocks the
        # server's next log write (and with it every request).
        self._log = tempfile.NamedTemporaryFile("w+", prefix="live-server-", suffix=".log")  # noqa: SIM115 (lives as long as the server)

    def start(self, timeout: float = 60) -> LiveServer:
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=self.env, check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen([*cli, "serve", "--port", str(self.port)], env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not become ready:\n{self.output}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.seek(0)
        self.output = self._log.read()
        return self.proc.returncode
