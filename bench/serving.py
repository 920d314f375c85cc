"""Side-by-side serving benchmark: this service vs its framework floor, ``mlflow models serve``
and (optionally) MLServer, same model, same load, one run.

    .venv/bin/python -m bench.serving [--duration 10] [--workers 1 2] [--data-dir var/bench]
        [--peers mlflow,mlserver] [--json FILE]

Trains (or reuses) the registered demo model (100-tree RandomForest, 12 features) in the data
dir's MLflow registry; measures the in-process ``predict_proba`` ceiling at batch 64; then, for
each worker count, starts one server at a time and drives it with the same load generator on
loopback (single-row and 100-row requests; 1, 8 and 64 keep-alive clients; fixed duration):

- ``mlflow models serve --env-manager local`` (peer ``mlflow``, on by default);
- MLServer 1.7.1 with its MLflow runtime and adaptive batching (peer ``mlserver``; ``mlserver-nb``
  is the same without batching), from a venv of its own created on first use (bench/mlserver_peer.py);
  if it cannot be installed or started the run says why and goes on without it;
- the framework floor (bench/floor_app.py): a bare FastAPI app on the service's uvicorn settings
  that parses the same request model and answers a constant body of the same shape;
- this service (prediction logging on, into a temporary Postgres database, fsync durability).

It prints requests/s, rows/s, p50/p95/p99 and errors per server; every figure of the service as
a ratio to the floor and to each peer; the targets of issue 15 ([met] / [NOT met]); cold start to
ready, idle and loaded RSS per process; whether the labels agree on 100 rows.
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
    from bench import mlserver_peer as mls
    from bench.procs import Server, free_port, rss_by_process, wait_idle
except ImportError:  # python bench/serving.py (the installed `app` package is imported)
    import loadgen
    import mlserver_peer as mls
    from procs import Server, free_port, rss_by_process, wait_idle

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL_NAME = "future-skills-model"
PG_ADMIN = os.environ.get("FS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS_PER_REQUEST = (1, 100)
CLIENTS = (1, 8, 64)
PEERS = ("mlflow", "mlserver", "mlserver-nb")
PEER_TITLE = {"floor": "framework floor", "mlflow": "MLflow", "mlserver": "MLServer (batching)",
              "mlserver-nb": "MLServer (no batching)"}


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
    """The Production version, loaded and warmed up as the service's slot loads it, with its
    compiled forest and serving bundle in the data dir's model cache (as `bootstrap` leaves
    them): the service is measured starting from the cache, as after any restart."""
    from app.config import Settings
    from app.container import build

    async def load():
        async with build(Settings(data_dir=data_dir)) as container:
            return await container.slot.prepare_cache()

    return asyncio.run(load())


def ceiling(model, seconds: float = 3.0) -> dict[str, float]:
    """In-process rows/s of sklearn ``predict_proba`` at batch 64 (and of the lean path)."""
    from app.ml.synthetic import generate
    from app.serving.loaded_model import to_frame

    rows = generate(64, seed=3, with_label=False).to_dict("records")
    frame = to_frame(rows)
    out = {}
    for name, call in (("predict_proba", lambda: model.fitted().predict_proba(frame)),
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

def sample_rows(n: int) -> list[dict]:
    """The same rows for every server (seed 11)."""
    from app.ml.synthetic import generate

    return generate(n, seed=11, with_label=False).to_dict("records")


def ours_body(rows: list[dict]) -> bytes:  # /v1/predictions (ours and the floor)
    return orjson.dumps({"items": rows})


def mlflow_body(rows: list[dict]) -> bytes:  # /invocations
    return orjson.dumps({"dataframe_records": rows})


def ours_labels(answer: dict) -> list[str]:
    return [p["level"] for p in answer["predictions"]]


def mlflow_labels(answer: dict) -> list[str]:
    return list(answer["predictions"])


def response_shape(answer: dict) -> tuple:
    """Keys and sizes of a /v1/predictions answer: the floor's must match the service's."""
    first = answer["predictions"][0]
    return (sorted(answer), sorted(answer["model"]), len(answer["predictions"]), sorted(first),
            sorted(first["probabilities"]))


def post(url: str, body: bytes) -> tuple[dict, int]:
    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    r.raise_for_status()
    return r.json(), len(r.content)


def drive(server: Server, url: str, make_body, duration: float, warmup: float) -> dict:
    results = {}
    for rows in ROWS_PER_REQUEST:
        body = make_body(sample_rows(rows))
        loadgen.run(url, body, 8, warmup)  # warm caches, connections and the batcher
        for clients in CLIENTS:
            settle(server)
            r = loadgen.run(url, body, clients, duration)
            results[(rows, clients)] = r
            note = "  (no request finished: lengthen --duration)" if r.requests == 0 else ""
            print(f"  {server.label:11} rows/req={rows:<3} clients={clients:<2} {r.rps:8.1f} req/s "
                  f"{r.rps * rows:9.0f} rows/s  p50 {r.p50_ms:7.1f}  p95 {r.p95_ms:7.1f}  "
                  f"p99 {r.p99_ms:7.1f} ms  errors {r.errors}{note}", flush=True)
    return results


def settle(server: Server) -> None:
    """Let the server finish what the previous run left queued (wrk hangs up on requests still in
    flight; a slow server goes on computing them), so each run starts on an idle server."""
    waited = wait_idle(server.proc.pid)
    if waited is None:
        print(f"  {server.label:11} still busy 30 s after the previous run; measuring anyway", flush=True)


def measure(server: Server, url: str, make_body, args, labels_of=None) -> dict:
    """Start ``server`` (timing its cold start), take its idle RSS and its answer to the 100
    sample rows, drive it through every load shape, take its loaded RSS, stop it."""
    print(f"[{server.label}] starting ...", flush=True)
    server.start()
    try:
        # Idle means settled: work a server starts in the background once ready (ours builds
        # the compiled forest and warms the explanation engine) is done and in its RSS.
        settled = wait_idle(server.proc.pid, window=1.0, timeout=120)
        idle = rss_by_process(server.proc.pid)
        print(f"[{server.label}] " + ("still busy 120 s after ready" if settled is None
                                       else f"settled {settled:.1f} s after ready"), flush=True)
        answer, size = post(url, make_body(sample_rows(100)))
        out = {"cold_start_s": server.cold_start_s, "rss_idle": idle, "response_bytes_100": size,
               "labels": labels_of(answer) if labels_of else None, "answer": answer}
        print(f"[{server.label}] ready in {server.cold_start_s:.1f} s, idle RSS "
              f"{max(rss for _, rss, _ in idle):.0f} MiB (largest process)", flush=True)
        out["results"] = drive(server, url, make_body, args.duration, args.warmup)
        out["rss"] = rss_by_process(server.proc.pid)
        return out
    finally:
        server.stop()  # SIGTERM: the service drains its prediction log before exiting


def run_mlflow(workers: int, args, env: dict, work: Path) -> dict:
    port = free_port()
    mlflow = Server(
        "mlflow",
        [str(Path(PY).parent / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@production",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
        env, "/ping", port, work / f"mlflow-w{workers}.log", REPO,
    )
    return measure(mlflow, f"http://127.0.0.1:{port}/invocations", mlflow_body, args, mlflow_labels)


def run_mlserver(workers: int, args, env: dict, work: Path, data_dir: Path, batching: bool) -> dict:
    """MLServer's figures, or raise ``mls.Unavailable`` with the reason it cannot run here."""
    mlserver = mls.ensure_venv(args.mlserver_venv.resolve(), work / "mlserver-install.log")
    root = mls.prepare_model(data_dir, MODEL_NAME, env)
    server = mls.server(mlserver, root, MODEL_NAME, workers, work / f"mlserver-w{workers}.log", env,
                        batching=batching)
    url = f"http://127.0.0.1:{server.port}{mls.infer_path(MODEL_NAME)}"
    try:
        return measure(server, url, mls.body, args, mls.labels)
    except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
        tail = server.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise mls.Unavailable(f"{type(exc).__name__}: {exc}; log tail: {' | '.join(tail)}") from exc


def run_floor(workers: int, args, env: dict, work: Path) -> dict:
    port = free_port()
    floor = Server("floor", [PY, "-m", "bench.floor_app", "--port", str(port), "--workers", str(workers)],
                   env, "/health/ready", port, work / f"floor-w{workers}.log", REPO)
    return measure(floor, f"http://127.0.0.1:{port}/v1/predictions", ours_body, args)


def run_ours(workers: int, args, env: dict, work: Path) -> tuple[dict, int]:
    """The service's figures and the rows its prediction log holds in Postgres afterwards."""
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
        result = measure(ours, f"http://127.0.0.1:{port}/v1/predictions", ours_body, args, ours_labels)
        logged = asyncio.run(_pg("SELECT count(*) FROM prediction", pg_url(db)))
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    return result, logged


def run_for_workers(workers: int, args, data_dir: Path, ceiling_rows: float) -> dict:
    env = base_env(data_dir)
    work = data_dir / "logs"
    work.mkdir(exist_ok=True)
    out: dict = {"workers": workers, "servers": {}, "skipped": {}}
    servers = out["servers"]
    print(f"\n[{workers} worker(s)]", flush=True)
    if "mlflow" in args.peers:
        servers["mlflow"] = run_mlflow(workers, args, env, work)
    for name in ("mlserver", "mlserver-nb"):
        if name in args.peers:
            try:
                servers[name] = run_mlserver(workers, args, env, work, data_dir, name == "mlserver")
            except (mls.Unavailable, OSError, subprocess.SubprocessError) as exc:
                out["skipped"][name] = str(exc)
                print(f"[{name}] SKIPPED: {exc}", flush=True)
    # The floor and the service last, back to back: their ratio is the one noise hurts most.
    servers["floor"] = run_floor(workers, args, env, work)
    servers["ours"], out["logged_rows"] = run_ours(workers, args, env, work)
    out["answered_rows_timed"] = sum(r.requests * rows
                                     for (rows, _), r in servers["ours"]["results"].items())
    ours = servers["ours"]
    out["labels_agree"] = {name: s["labels"] == ours["labels"] for name, s in servers.items()
                           if name not in ("ours", "floor")}
    out["floor_shape_matches"] = response_shape(servers["floor"]["answer"]) == response_shape(ours["answer"])
    for s in servers.values():
        del s["answer"], s["labels"]
    out["ratios"] = ratios(servers)
    out["targets"] = targets(servers)
    out["targets"].append({"target": "labels on 100 rows identical to every peer's",
                           "met": all(out["labels_agree"].values()) if out["labels_agree"] else None})
    report(out, ceiling_rows)
    return out


# -- ratios, targets, report ----------------------------------------------------------------

METRICS = {  # name: (figure of a LoadResult at `rows` rows per request, higher is better)
    "req/s": (lambda r, rows: r.rps, True),
    "rows/s": (lambda r, rows: r.rps * rows, True),
    "p50 ms": (lambda r, rows: r.p50_ms, False),
    "p99 ms": (lambda r, rows: r.p99_ms, False),
}


def ratios(servers: dict) -> dict:
    """ours / peer for every metric and load shape, per peer (the floor included)."""
    ours = servers["ours"]["results"]
    out: dict = {}
    for peer, s in servers.items():
        if peer == "ours":
            continue
        out[peer] = {
            f"{rows}x{clients}": {m: _div(f(r, rows), f(s["results"][(rows, clients)], rows))
                                  for m, (f, _) in METRICS.items()}
            for (rows, clients), r in ours.items()
        }
    return out


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def targets(servers: dict) -> list[dict]:
    """Issue 15's targets; ``met`` is None when the peer a target needs did not run."""
    ours, mlflow = servers["ours"], servers.get("mlflow")
    o = ours["results"]

    def measured(peer: str, key: tuple[int, int]) -> bool:  # it ran and answered in that run
        return peer in servers and servers[peer]["results"][key].requests > 0

    def rps_at_least(peer: str, key: tuple[int, int], factor: float) -> bool | None:
        if not measured(peer, key):
            return None  # rows/s ratio = req/s ratio: the same rows per request on both sides
        return o[key].rps >= factor * servers[peer]["results"][key].rps

    def p50_at_most(peer: str, factor: float) -> bool | None:
        if not measured(peer, (1, 1)):
            return None
        return o[(1, 1)].p50_ms <= factor * servers[peer]["results"][(1, 1)].p50_ms

    idle_rss = max(rss for _, rss, _ in ours["rss_idle"])
    cold = None if mlflow is None else ours["cold_start_s"] <= mlflow["cold_start_s"]
    rows = [
        ("64 conns, single-row: req/s >= 0.5x the framework floor's", rps_at_least("floor", (1, 64), 0.5)),
        ("64 conns, single-row: req/s >= 60x MLflow's", rps_at_least("mlflow", (1, 64), 60)),
        ("1 conn, single-row: p50 <= 1/5 of MLflow's", p50_at_most("mlflow", 1 / 5)),
        ("8 conns, 100-row: rows/s >= 5x MLflow's", rps_at_least("mlflow", (100, 8), 5)),
        (f"idle RSS of a worker <= 400 MiB ({idle_rss:.0f} MiB)", idle_rss <= 400),
        (f"cold start to ready <= MLflow's ({ours['cold_start_s']:.1f} s vs "
         f"{mlflow['cold_start_s'] if mlflow else float('nan'):.1f} s)", cold),
        ("no request errors (ours)", all(r.errors == 0 for r in o.values())),
        ("64 conns, single-row: req/s >= 2x MLServer's", rps_at_least("mlserver", (1, 64), 2)),
        ("8 conns, 100-row: rows/s >= 1.5x MLServer's", rps_at_least("mlserver", (100, 8), 1.5)),
        ("1 conn, single-row: p50 <= 0.5x MLServer's", p50_at_most("mlserver", 0.5)),
    ]
    return [{"target": label, "met": ok} for label, ok in rows]


def report(out: dict, ceiling_rows: float) -> None:
    servers = out["servers"]
    ours = servers["ours"]["results"]
    peers = [p for p in ("floor", *PEERS) if p in servers]
    print(f"\n== {out['workers']} worker(s): ours vs {', '.join(PEER_TITLE[p] for p in peers)} ==")
    print("ratio = ours / theirs (req/s, rows/s: higher is better; p50, p99: lower is better)")
    for metric, (fig, _) in METRICS.items():
        cells = [f"{'ours':>9}"] + [f"{p:>11} {'ratio':>7}" for p in peers]
        print(f"\n{metric:<8}{'rows/req':>9} {'conns':>5} | " + " | ".join(cells))
        for (rows, clients), r in ours.items():
            mine = fig(r, rows)
            row = [f"{mine:9.1f}"]
            for p in peers:
                theirs = fig(servers[p]["results"][(rows, clients)], rows)
                row.append(f"{theirs:11.1f} {_ratio(mine, theirs):>7}")
            print(f"{'':<8}{rows:>9} {clients:>5} | " + " | ".join(row))
    print(f"\nerrors   {'rows/req':>9} {'conns':>5} | " + " | ".join(f"{n:>9}" for n in ["ours", *peers]))
    for key in ours:
        print(f"{'':<8} {key[0]:>9} {key[1]:>5} | "
              + " | ".join(f"{servers[n]['results'][key].errors:>9}" for n in ["ours", *peers]))

    single64 = ours[(1, 64)].rps
    print(f"\nceiling (in-process predict_proba, batch 64): {ceiling_rows:,.0f} rows/s; ours single-row "
          f"at 64 conns: {single64:,.0f} rows/s = {single64 / ceiling_rows:.2f} of it")
    print("targets (issue 15):")
    for t in out["targets"]:
        mark = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        print(f"  [{mark}] {t['target']}")
    for name, why in out["skipped"].items():
        print(f"  [n/a] {PEER_TITLE[name]} did not run: {why}")
    for name, s in servers.items():
        print(f"  {name}: cold start to ready {s['cold_start_s']:.1f} s; RSS idle / loaded per process: "
              + _rss(s["rss_idle"], s["rss"]))
    agree = ", ".join(f"{PEER_TITLE[n]} {ok}" for n, ok in out["labels_agree"].items()) or "no peer ran"
    print(f"  labels on 100 rows agree with: {agree}; floor answer has the service's shape: "
          f"{out['floor_shape_matches']} ({servers['floor']['response_bytes_100']} vs "
          f"{servers['ours']['response_bytes_100']} bytes for 100 rows)")
    print(f"  prediction log: {out['logged_rows']} rows in Postgres (timed runs answered "
          f"{out['answered_rows_timed']} rows, plus warm-up and checks)")


def _rss(idle: list, loaded: list) -> str:
    after = {pid: rss for pid, rss, _ in loaded}
    return ", ".join(f"{rss:.0f} / {after.get(pid, float('nan')):.0f} MiB "
                     f"({cmd.split()[0].rsplit('/', 1)[-1]} {pid})" for pid, rss, cmd in idle)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def parse_peers(text: str) -> tuple[str, ...]:
    peers = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {sorted(unknown)}; known: {', '.join(PEERS)}")
    return peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per request size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts to run")
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--peers", type=parse_peers, default=("mlflow",),
                        help=f"comma-separated peers besides the floor: {', '.join(PEERS)} (default mlflow)")
    parser.add_argument("--mlserver", action="store_true", help="add the mlserver peer")
    parser.add_argument("--mlserver-venv", type=Path, default=REPO / "var" / "mlserver-venv",
                        help="MLServer's own venv (created on first use)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.mlserver and "mlserver" not in args.peers:
        args.peers = (*args.peers, "mlserver")
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
            {"ceiling": ceil, "duration_s": args.duration, "peers": list(args.peers),
             "runs": [_jsonable(r) for r in runs]}, indent=2, default=str))


def _jsonable(run: dict) -> dict:
    out = dict(run)
    out["servers"] = {
        name: s | {"results": {f"{rows}x{clients}": vars(r) | {"rps": r.rps, "rows_per_s": r.rps * rows}
                               for (rows, clients), r in s["results"].items()}}
        for name, s in run["servers"].items()
    }
    return out


if __name__ == "__main__":
    main()
