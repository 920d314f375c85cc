"""The benchmark programs still run: each at a tiny size, checked for its tables, not its figures.

Figures are the benchmarks' business (docs/benchmark.md, docs/prediction-log.md,
docs/monitoring.md); this only keeps them from rotting as the code under them changes.
The serving benchmark starts two servers per worker count and is left to a manual run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import PG_ADMIN_DSN

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "MLFLOW_TRACKING"))}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "FS_TEST_PG_DSN": PG_ADMIN_DSN}
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.postgres
def test_prediction_log_benchmark_runs():
    out = run_bench("prediction_log", "--pg", PG_ADMIN_DSN, "--rows", "1000", "--requests", "64")
    assert "Postgres ingestion" in out and "request latency by durability" in out
    for line in ("copy", "insert", "fsync", "os ", "none"):
        assert line in out, out
    assert "fsyncs for 64 requests" in out  # the measured requests only, not the warm-up


@pytest.mark.postgres
def test_drift_benchmark_runs():
    out = run_bench("drift", "--rows", "5000", "--pg-dsn", PG_ADMIN_DSN)
    assert "Evidently computation / native computation" in out
    assert "(same)" in out, out  # both engines flag the same features


def test_nodelay_benchmark_runs():
    out = run_bench("multiworker_nodelay", "--requests", "20")
    assert "nodelay" in out
