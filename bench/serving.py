"""Side-by-side serving benchmark: this service vs ``mlflow models serve``, same model, same load.

    .venv/bin/python -m bench.serving [--duration 10] [--workers 1 2] [--data-dir var/bench]

Trains (or reuses) the registered demo model (100-tree RandomForest, 12 features) in the data
dir's MLflow registry; measures the in-process ``predict_proba`` ceiling at batch 64; then, for
each worker count, starts ``mlflow models serve --env-manager local`` and this service (prediction
logging on, into a temporary Postgres database) one after the other, drives each with the same
load generator on loopback (single-row and 100-row requests; 1, 8 and 64 keep-alive clients;
fixed duration), and prints requests/s, rows/s, p50/p95/p99, errors, the ratios ours/MLflow,
the targets of issue 7, cold start time to ready and memory (RSS) per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

try:  # python -m bench.serving (from the repo root: this checkout's `app` is imported)
    from bench import loadgen
    from bench.procs import Server, free_port, rss_by_process
except ImportError:  # python bench/serving.py (the installed `app` package is imported)
    import loadgen
    from procs import Server, free_port, rss_by_process

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL_NAME = "future-skills-model"
PG_ADMIN = os.environ.get("FS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS_PER_REQUEST = (1, 100)
CLIENTS = (1, 8, 64)


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FS_", "MLFLOW_", "DATABASE_URL"))}
    env |= {
        "FS_DATA_DIR": str(data_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        # mlflow models serve runs `uvicorn` from PATH.
        "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def ensure_model(data_dir: Path) -> None:
    """Train and register the demo model unless the registry already has a Production version."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(data_dir)
    env.pop("MLFLOW_TRACKING_URI")  # the service's embedded default is the same SQLite file
    print(f"model: bootstrap in {data_dir} (trains only if no Production version exists)", flush=True)
    subprocess.run([PY, "-m", "app.cli", "bootstrap"], cwd=REPO, env=env, check=True, timeout=1800)


def load_model(data_dir: Path):
    """The Production version, loaded and warmed up as the service's slot loads it."""
    from app.config import Settings
    from app.container import build

    async def load():
        async with build(Settings(data_dir=data_dir)) as container:
            return await container.slot.load_production()

    return asyncio.run(load())


def ceiling(model, seconds: float = 3.0) -> dict[str, float]:
    """In-process rows/s of sklearn ``predict_proba`` at batch 64 (and of the lean path)."""
    from app.ml.synthetic import generate
    from app.serving.loaded_model import to_frame

    rows = generate(64, seed=3, with_label=False).to_dict("records")
    frame = to_frame(rows)
    out = {}
    for name, call in (("predict_proba", lambda: model.pipeline.predict_proba(frame)),
                       ("lean", lambda: model.predict_rows(rows))):
        call()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            call()
            n += 1
        out[name] = 64 * n / (time.perf_counter() - started)
    return out


# -- Postgres -------------------------------------------------------------------------------

async def _pg(sql: str, dsn: str = PG_ADMIN):
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


# -- the benchmark --------------------------------------------------------------------------

def bodies(rows_per_request: int) -> tuple[bytes, bytes]:
    """The same rows, shaped for each endpoint: ours (/v1/predictions), MLflow (/invocations)."""
    from app.ml.synthetic import generate

    rows = generate(rows_per_request, seed=11, with_label=False).to_dict("records")
    return orjson.dumps({"items": rows}), orjson.dumps({"dataframe_records": rows})


def check_agreement(ours: str, mlflow: str) -> bool:
    """Both servers give the same labels for the same 100 rows (checked once, outside the timing)."""
    body_ours, body_mlflow = bodies(100)
    headers = {"content-type": "application/json"}
    a = httpx.post(ours, content=body_ours, headers=headers, timeout=30).json()
    b = httpx.post(mlflow, content=body_mlflow, headers=headers, timeout=30).json()
    return [p["level"] for p in a["predictions"]] == b["predictions"]


def drive(server: Server, url: str, which: int, duration: float, warmup: float) -> dict:
    results = {}
    for rows in ROWS_PER_REQUEST:
        body = bodies(rows)[which]
        loadgen.run(url, body, 8, warmup)  # warm caches, connections and the batcher
        for clients in CLIENTS:
            r = loadgen.run(url, body, clients, duration)
            results[(rows, clients)] = r
            print(f"  {server.label:8} rows/req={rows:<3} clients={clients:<2} {r.rps:8.1f} req/s "
                  f"{r.rps * rows:9.0f} rows/s  p50 {r.p50_ms:7.1f}  p95 {r.p95_ms:7.1f}  "
                  f"p99 {r.p99_ms:7.1f} ms  errors {r.errors}", flush=True)
    return results


def run_for_workers(workers: int, args, data_dir: Path, ceiling_rows: float) -> dict:
    env = base_env(data_dir)
    work = data_dir / "logs"
    work.mkdir(exist_ok=True)
    out = {"workers": workers}

    port = free_port()
    mlflow = Server(
        "mlflow",
        [str(Path(PY).parent / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@production",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
        env, "/ping", port, work / f"mlflow-w{workers}.log", REPO,
    )
    db = f"fs_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{db}"'))
    try:
        ours_env = env | {"DATABASE_URL": pg_url(db), "FS_LOG_LEVEL": "WARNING"}
        ours_env.pop("MLFLOW_TRACKING_URI")
        subprocess.run([PY, "-m", "app.cli", "db", "upgrade"], cwd=REPO, env=ours_env, check=True,
                       capture_output=True, timeout=120)
        port = free_port()
        ours = Server("ours", [PY, "-m", "app.cli", "serve", "--port", str(port), "--workers",
                               str(workers)], ours_env, "/health/ready", port,
                      work / f"ours-w{workers}.log", REPO)

        servers = {}
        print(f"\n[{workers} worker(s)] starting mlflow models serve ...", flush=True)
        mlflow.start()
        servers["mlflow"] = measure(mlflow, f"http://127.0.0.1:{mlflow.port}/invocations", 1, args)
        print(f"[{workers} worker(s)] starting ours ...", flush=True)
        ours.start()
        try:
            url = f"http://127.0.0.1:{ours.port}/v1/predictions"
            out["labels_agree"] = check_agreement(url, f"http://127.0.0.1:{mlflow.port}/invocations")
            mlflow.stop()  # idle from here on, but out of the way
            servers["ours"] = measure(ours, url, 0, args)
        finally:
            ours.stop()  # SIGTERM: the service drains its prediction log before exiting
        logged = asyncio.run(_pg("SELECT count(*) FROM prediction", pg_url(db)))
        answered = sum(r.requests * rows for (rows, _), r in servers["ours"]["results"].items())
        out["logged_rows"], out["answered_rows_timed"] = logged, answered
    finally:
        mlflow.stop()
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    out["servers"] = servers
    report(out, ceiling_rows)
    return out


def measure(server: Server, url: str, which: int, args) -> dict:
    try:
        results = drive(server, url, which, args.duration, args.warmup)
        return {"cold_start_s": server.cold_start_s, "rss": rss_by_process(server.proc.pid),
                "results": results}
    except BaseException:
        server.stop()
        raise


def report(out: dict, ceiling_rows: float) -> None:
    ours, theirs = out["servers"]["ours"], out["servers"]["mlflow"]
    w = out["workers"]
    print(f"\n== {w} worker(s): ours / MLflow ==")
    print(f"{'rows/req':>8} {'clients':>7} | {'req/s':>14} {'ratio':>6} | {'rows/s ratio':>12} | "
          f"{'p50 ms':>13} | {'p99 ms':>15} {'ratio':>6} | errors")
    for key, r in ours["results"].items():
        m = theirs["results"][key]
        rows, clients = key
        print(f"{rows:>8} {clients:>7} | {r.rps:6.0f} / {m.rps:5.0f} {_ratio(r.rps, m.rps):>6} | "
              f"{_ratio(r.rps * rows, m.rps * rows):>12} | {r.p50_ms:5.1f} / {m.p50_ms:5.1f} | "
              f"{r.p99_ms:6.1f} / {m.p99_ms:6.1f} {_ratio(r.p99_ms, m.p99_ms):>6} | "
              f"{r.errors} / {m.errors}")
    o, m = ours["results"], theirs["results"]
    single64 = o[(1, 64)].rps
    targets = [
        ("single-row, 64 clients: req/s >= 20x MLflow", o[(1, 64)].rps >= 20 * m[(1, 64)].rps),
        ("single-row, 64 clients: p99 <= 1/10 of MLflow's", o[(1, 64)].p99_ms * 10 <= m[(1, 64)].p99_ms),
        ("single-row, 1 client: p50 <= MLflow's", o[(1, 1)].p50_ms <= m[(1, 1)].p50_ms),
        ("100-row, 8 clients: rows/s >= 1.5x MLflow", o[(100, 8)].rps >= 1.5 * m[(100, 8)].rps),
        ("single-row, 64 clients: >= 1/4 of the batch-64 ceiling", single64 >= ceiling_rows / 4),
        ("no request errors (ours)", all(r.errors == 0 for r in o.values())),
    ]
    print(f"ceiling (in-process predict_proba, batch 64): {ceiling_rows:,.0f} rows/s; ours single-row "
          f"at 64 clients: {single64:,.0f} rows/s = {single64 / ceiling_rows:.2f} of it")
    for label, ok in targets:
        print(f"  [{'met' if ok else 'NOT met'}] {label}")
    for name, s in out["servers"].items():
        procs = ", ".join(f"{rss:.0f} MiB ({cmd.split()[0].rsplit('/', 1)[-1]} {pid})"
                          for pid, rss, cmd in s["rss"])
        print(f"  {name}: cold start to ready {s['cold_start_s']:.1f} s; RSS per process: {procs}")
    print(f"  prediction log: {out['logged_rows']} rows in Postgres (timed runs answered "
          f"{out['answered_rows_timed']} rows, plus warm-up); "
          f"labels agree with MLflow: {out['labels_agree']}")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per request size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts to run")
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()

    ensure_model(data_dir)
    model = load_model(data_dir)
    ceil = ceiling(model)
    print(f"in-process ceiling at batch 64: predict_proba {ceil['predict_proba']:,.0f} rows/s, "
          f"lean path {ceil['lean']:,.0f} rows/s (load generator: "
          f"{'wrk' if loadgen.have_wrk() else 'asyncio (install wrk for lighter load)'})")
    del model
    runs = [run_for_workers(w, args, data_dir, ceil["predict_proba"]) for w in args.workers]
    if args.json:
        args.json.write_text(json.dumps(
            {"ceiling": ceil, "runs": [_jsonable(r) for r in runs]}, indent=2, default=str))


def _jsonable(run: dict) -> dict:
    out = dict(run)
    out["servers"] = {
        name: s | {"results": {f"{rows}x{clients}": vars(r) for (rows, clients), r in s["results"].items()}}
        for name, s in run["servers"].items()
    }
    return out


if __name__ == "__main__":
    main()
