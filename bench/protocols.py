"""Latency of one model behind four dialects, next to MLflow's own scoring server.

Starts ``future-skills serve`` and ``mlflow models serve`` on free ports against the registry in
``--data-dir`` (bootstrap it first: ``FS_DATA_DIR=DIR future-skills bootstrap``), then sends
sequential requests (one client) and prints p50 / p99 latency and requests/s per route.
httpx adds a few ms per request (FIELD-NOTES.md): compare rows with each other, not with wrk.

    python -m bench.protocols --data-dir var --requests 200   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

from app.config import Settings
from app.ml.features import FEATURES
from app.ml.synthetic import generate
from tests.support.procs import free_port, running

V2_TYPES = {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}


def payloads(rows: list[dict], model: str) -> dict[str, tuple[str, bytes, str]]:
    v2 = {"inputs": [
        {"name": f.name, "datatype": V2_TYPES[f.kind], "shape": [len(rows), 1],
         "data": [r[f.name] for r in rows]}
        for f in FEATURES
    ]}
    return {
        "/v1/predictions": ("/v1/predictions", json.dumps({"items": rows}).encode(), "application/json"),
        "/invocations json": (
            "/invocations", json.dumps({"dataframe_records": rows}).encode(), "application/json"
        ),
        "/invocations csv": ("/invocations", pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv"),
        "/v2 infer": (f"/v2/models/{model}/infer", json.dumps(v2).encode(), "application/json"),
    }


def measure(base: str, path: str, body: bytes, content_type: str, n: int) -> tuple[float, float, float]:
    times = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(n + 10):
            started = time.perf_counter()
            response = client.post(path, content=body, headers={"Content-Type": content_type})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{base}{path}: {response.status_code} {response.text[:200]}")
            if i >= 10:  # warm-up excluded
                times.append(elapsed)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.99 * (len(times) - 1))] * 1e3, len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--version", default="1", help="registered version MLflow's server loads")
    args = parser.parse_args()

    data_dir = args.data_dir.resolve()
    settings = Settings(data_dir=data_dir)
    bindir = Path(sys.executable).parent
    hidden = ("FS_", "MLFLOW_TRACKING", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}"}
    ours_port, mlflow_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ours_env = env | {"FS_DATA_DIR": str(data_dir), "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                          "FS_LOG_LEVEL": "WARNING", "FS_WORKERS": "1"}  # one worker, as mlflow
        mlflow_env = env | {"MLFLOW_TRACKING_URI": settings.tracking_uri}
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=ours_env, check=True, capture_output=True)
        serve = [*cli, "serve", "--port", str(ours_port)]
        mlflow = [str(bindir / "mlflow"), "models", "serve", "-m",
                  f"models:/{settings.model.name}/{args.version}", "--env-manager", "local",
                  "-h", "127.0.0.1", "-p", str(mlflow_port)]
        ours_base, mlflow_base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{mlflow_port}"
        with running(serve, ours_env, f"{ours_base}/health/ready"), \
                running(mlflow, mlflow_env, f"{mlflow_base}/ping"):
            print(f"{'server':<8} {'route':<20} {'rows':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
            for n_rows in (1, 100):
                rows = generate(n_rows, seed=3, with_label=False).to_dict("records")
                routes = payloads(rows, settings.model.name)
                for label, (path, body, ctype) in routes.items():
                    p50, p99, rps = measure(ours_base, path, body, ctype, args.requests)
                    print(f"{'ours':<8} {label:<20} {n_rows:>4} {p50:>8.1f} {p99:>8.1f} {rps:>7.1f}")
                for label in ("/invocations json", "/invocations csv"):
                    path, body, ctype = routes[label]
                    p50, p99, rps = measure(mlflow_base, path, body, ctype, args.requests)
                    print(f"{'mlflow':<8} {label:<20} {n_rows:>4} {p50:>8.1f} {p99:>8.1f} {rps:>7.1f}")


if __name__ == "__main__":
    main()
