"""The cost of shadow scoring: the service with a challenger in the shadow next to without.

    .venv/bin/python -m bench.shadow [--duration 10] [--rounds 2] [--data-dir var/bench-shadow]

Bootstraps the demo model (version 1, Production) in the data dir unless it is there, trains a
second version (another seed) and points the registry's ``challenger`` alias at it. Then starts
the service (one worker, prediction log into a temporary Postgres database, fsync durability)
alternately with shadow scoring off (``FS_CHALLENGER_SHADOW=false``: the challenger is not even
loaded) and on, ``--rounds`` times each so both see the same machine, and drives each
with the same load: one client with single-row requests (the latency figure), 8 clients with
single-row and with 100-row requests (throughput). Prints p50/p95 and requests/s of each, the
ratios on/off, the shadow rows stored against the predictions logged, the rows dropped, and
whether the target holds (single-client p50 with shadow on within 15% of off).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
import uuid
from pathlib import Path
from statistics import median

import httpx

from bench import loadgen
from bench.procs import Server, free_port, wait_idle
from bench.serving import (
    MODEL_NAME,
    PY,
    REPO,
    _pg,
    base_env,
    ensure_model,
    ours_body,
    pg_url,
    sample_rows,
)

TARGET_P50_RATIO = 1.15
SHAPES = ((1, 1), (1, 8), (100, 8))  # (rows per request, clients)


def ensure_challenger(data_dir: Path) -> str:
    """A second registered version under the challenger alias (trained once per data dir)."""
    from app.config import Settings
    from app.registry.client import ModelRegistry

    settings = Settings(data_dir=data_dir)
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    aliases = registry.aliases(MODEL_NAME)
    if "challenger" in aliases and aliases["challenger"] != aliases.get("production"):
        return aliases["challenger"]
    env = base_env(data_dir)
    env.pop("MLFLOW_TRACKING_URI")
    print("challenger: training a second version (seed 7)", flush=True)
    subprocess.run([PY, "-m", "app.cli", "train", "--seed", "7"], cwd=REPO, env=env, check=True,
                   timeout=1800, capture_output=True)
    latest = registry.list_versions(MODEL_NAME)[-1].version
    registry.set_alias(MODEL_NAME, "challenger", latest)
    return latest


def run_service(data_dir: Path, shadow: bool, args, work: Path) -> dict:
    db = f"fs_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{db}"'))
    label = "shadow-on" if shadow else "shadow-off"
    try:
        env = base_env(data_dir) | {"DATABASE_URL": pg_url(db), "FS_LOG_LEVEL": "WARNING",
                                    "FS_CHALLENGER_SHADOW": str(shadow).lower()}
        env.pop("MLFLOW_TRACKING_URI")
        subprocess.run([PY, "-m", "app.cli", "db", "upgrade"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=120)
        port = free_port()
        server = Server(label, [PY, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1"],
                        env, "/health/ready", port, work / f"{label}.log", REPO)
        base = f"http://127.0.0.1:{port}"
        server.start()
        try:
            if shadow:
                _wait_challenger_loaded(base)
            url = f"{base}/v1/predictions"
            out: dict = {}
            for rows, clients in SHAPES:
                body = ours_body(sample_rows(rows))
                loadgen.run(url, body, clients, args.warmup)
                wait_idle(server.proc.pid)
                out[(rows, clients)] = loadgen.run(url, body, clients, args.duration)
            time.sleep(3.0)  # the shadow queue and the drainer finish
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            server.stop()
        logged = asyncio.run(_pg("SELECT count(*) FROM prediction", pg_url(db)))
        shadowed = asyncio.run(_pg("SELECT count(*) FROM shadow_prediction", pg_url(db)))
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    dropped = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("fs_shadow_rows_total") and 'outcome="stored"' not in line)
    return {"results": out, "logged": logged, "shadowed": shadowed, "dropped": dropped}


def _wait_challenger_loaded(base: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/v1/models/{MODEL_NAME}/challenger", timeout=10)
        if r.status_code == 200 and r.json()["state"]["loaded"]:
            return
        time.sleep(0.5)
    raise RuntimeError("the challenger was not loaded in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench-shadow"))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    ensure_model(data_dir)
    version = ensure_challenger(data_dir)
    print(f"challenger: version {version}; load generator: "
          f"{'wrk' if loadgen.have_wrk() else 'asyncio'}", flush=True)
    work = data_dir / "bench-shadow-logs"
    work.mkdir(exist_ok=True)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for i in range(args.rounds):
        for shadow in (False, True):
            run = run_service(data_dir, shadow, args, work)
            runs[shadow].append(run)
            for (rows, clients), r in run["results"].items():
                print(f"  round {i + 1} shadow {'on ' if shadow else 'off'} rows/req={rows:<3} "
                      f"clients={clients}  {r.rps:8.1f} req/s  p50 {r.p50_ms:6.2f}  "
                      f"p95 {r.p95_ms:6.2f} ms  errors {r.errors}", flush=True)
            print(f"  round {i + 1} shadow {'on ' if shadow else 'off'} logged {run['logged']} "
                  f"predictions, {run['shadowed']} shadow rows stored, {run['dropped']:.0f} "
                  "dropped", flush=True)
    print("\nmedian over rounds (shadow on / off):")
    for shape in SHAPES:
        off = [r["results"][shape] for r in runs[False]]
        on = [r["results"][shape] for r in runs[True]]
        p50_off, p50_on = median(r.p50_ms for r in off), median(r.p50_ms for r in on)
        rps_off, rps_on = median(r.rps for r in off), median(r.rps for r in on)
        print(f"  rows/req={shape[0]:<3} clients={shape[1]}: p50 {p50_off:.2f} -> {p50_on:.2f} ms "
              f"(x{p50_on / p50_off:.3f}), {rps_off:.0f} -> {rps_on:.0f} req/s "
              f"(x{rps_on / rps_off:.3f})")
    stored = sum(r["shadowed"] for r in runs[True])
    logged = sum(r["logged"] for r in runs[True])
    print(f"  shadow rows stored: {stored} of {logged} predictions ({stored / max(logged, 1):.1%})")
    single = (1, 1)
    ratio = (median(r["results"][single].p50_ms for r in runs[True])
             / median(r["results"][single].p50_ms for r in runs[False]))
    verdict = "met" if ratio <= TARGET_P50_RATIO else "NOT met"
    print(f"target: single-client p50 with shadow on within 15% of off: x{ratio:.3f} [{verdict}]")


if __name__ == "__main__":
    main()
