"""Benchmark: a drift report over 1,000,000 logged predictions in Postgres, native vs Evidently.

    python -m bench.drift [--rows 1000000] [--pg-dsn postgresql://postgres@127.0.0.1:5432/postgres]

Run it from the project root (``-m``, so the project's ``app`` package is the one imported).
It creates a scratch database, trains a small model whose reference sample has 5,000 rows,
COPYs the predictions in (three features shifted; then VACUUM and CHECKPOINT, the state of a
log that filled over hours), then runs each engine in its own process so
that peak memory (ru_maxrss) is measured separately:

- native: the whole report, database read included (COPY of the window -> Arrow -> numpy/scipy),
  with the sections on the model itself (confidence drift; importance drift: exact TreeSHAP of
  200 window rows against the held-out rows' importance, which the service caches per version);
- Evidently: the same window read the same way into a DataFrame, then ``Report([DataDriftPreset()])``
  timed alone on the already-loaded frame (its import is reported, not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

SHIFTED = ["trend_score", "training_requests", "avg_salary_k"]
MODEL = "future-skills-model"


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def reset_peak() -> float:
    """Reset this process's peak RSS (Linux: clear_refs 5) and return the current RSS in MB.

    ``ru_maxrss`` is no use here: Linux carries it across execve, so a child would report the
    parent's peak (the parent trains a model)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


def settings_for(data_dir: str, db_url: str):
    from app.config import Settings, TrainingSettings

    return Settings(data_dir=data_dir, database_url=db_url,
                    training=TrainingSettings(rows=8000, n_estimators=20, reference_rows=5000))


# -- parent: set up, run the phases, print ------------------------------------------------------

async def create_database(admin_dsn: str) -> tuple[str, str]:
    import asyncpg

    name = f"fs_bench_drift_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def copy_predictions(dsn: str, rows: int) -> float:
    """COPY ``rows`` predictions (binary protocol) spread over the last 12 hours."""
    import asyncpg
    import numpy as np

    from app.ml.synthetic import generate

    started = time.perf_counter()
    frame = generate(rows, seed=99, shift=SHIFTED)
    levels = frame.pop("future_need_level").tolist()
    features = frame.to_json(orient="records", lines=True).splitlines()
    now = datetime.now(UTC)
    offsets = np.random.default_rng(1).uniform(60, 12 * 3600, rows)
    # Probabilities spread as a forest's are (the confidence section reads them), not constant,
    # with the largest on the logged level, as the service logs them.
    ranked = -np.sort(-np.random.default_rng(2).dirichlet([2.0, 2.0, 2.0], rows).round(2), axis=1)
    level_at = np.array([("LOW", "MEDIUM", "HIGH").index(level) for level in levels])
    spread = np.empty_like(ranked)
    for rank in range(3):
        spread[np.arange(rows), (level_at + rank) % 3] = ranked[:, rank]
    probabilities = [json.dumps(dict(zip(("LOW", "MEDIUM", "HIGH"), map(float, p), strict=True)))
                     for p in spread]
    records = (
        (uuid.uuid4(), now - timedelta(seconds=float(off)), MODEL, "1", feat, level,
         probability, 65.0, 8.0, None, "v1", None)
        for feat, level, off, probability in zip(features, levels, offsets, probabilities,
                                                 strict=True)
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "prediction", records=records,
            columns=["id", "created_at", "model_name", "model_version", "features", "level",
                     "probabilities", "score", "latency_ms", "request_id", "protocol",
                     "subject_hash"],
        )
        # A log that filled over 12 hours has been through autovacuum (its insert threshold) and
        # checkpoints: without this the first read of a fresh 1M-row COPY sets every row's hint
        # bits (writes) while the checkpointer flushes the load, and times that, not the report.
        await conn.execute("VACUUM (ANALYZE) prediction")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


def run_phase(phase: str, data_dir: str, db_url: str, rows: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.drift", "--phase", phase, "--data-dir", data_dir, "--db-url", db_url,
         "--rows", str(rows)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{phase} phase failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main_parent(args) -> None:
    from app.config import Settings
    from app.container import build
    from app.db.migrate import upgrade_sync
    from app.training.train import train

    async def train_reference(settings: Settings) -> None:
        async with build(settings) as container:
            await train(container)

    name, dsn = asyncio.run(create_database(args.pg_dsn))
    db_url = dsn.replace("postgresql://", "postgresql+asyncpg://")
    try:
        with tempfile.TemporaryDirectory(prefix="fs-bench-drift-") as data_dir:
            upgrade_sync(db_url)
            t = time.perf_counter()
            settings = settings_for(data_dir, db_url)
            settings.ensure_dirs()
            asyncio.run(train_reference(settings))
            save_reference(data_dir, db_url)
            print(f"trained the reference model in {time.perf_counter() - t:.1f} s")
            inserted = asyncio.run(copy_predictions(dsn, args.rows))
            print(f"COPY of {args.rows:,} predictions: {inserted:.1f} s "
                  f"({args.rows / inserted:,.0f} rows/s)")
            native = run_phase("native", data_dir, db_url, args.rows)
            evid = run_phase("evidently", data_dir, db_url, args.rows)
    finally:
        if not args.keep:
            asyncio.run(drop_database(args.pg_dsn, name))
    report(native, evid)


def report(native: dict, evid: dict) -> None:
    print()
    print(f"window: {native['current_rows']:,} current rows vs {native['reference_rows']:,} "
          f"reference rows; tests: {', '.join(sorted(set(native['methods'])))}")
    print(f"{'':42}{'time s':>9}{'peak RSS MB':>13}{'added MB':>10}   (added: peak minus RSS at start)")
    print(f"{'native: whole report (DB read included)':42}{native['total_s']:>9.2f}"
          f"{native['peak_mb']:>13.0f}{native['peak_mb'] - native['base_mb']:>10.0f}")
    print(f"{'  of which DB read (COPY -> Arrow)':42}{native['read_s']:>9.2f}")
    print(f"{'  of which tests, confidence, importance':42}{native['compute_s']:>9.2f}")
    for part in ("tests", "confidence", "importance"):
        print(f"{'    ' + part:42}{native[part + '_s']:>9.2f}")
    print(f"{'Evidently: computation on a loaded frame':42}{evid['compute_s']:>9.2f}"
          f"{evid['peak_mb']:>13.0f}{evid['peak_mb'] - evid['base_mb']:>10.0f}")
    print(f"{'  its DB read into a DataFrame':42}{evid['read_s']:>9.2f}")
    print(f"{'  its import (once per process)':42}{evid['import_s']:>9.2f}")
    print()
    print(f"Evidently computation / native computation: {evid['compute_s'] / native['compute_s']:.1f}x")
    print(f"Evidently computation / whole native report: {evid['compute_s'] / native['total_s']:.1f}x")
    print(f"Evidently (read + computation) / whole native report: "
          f"{(evid['read_s'] + evid['compute_s']) / native['total_s']:.1f}x")
    print(f"memory added, Evidently / native: "
          f"{(evid['peak_mb'] - evid['base_mb']) / max(native['peak_mb'] - native['base_mb'], 1):.1f}x")
    same = native["drifted"] == evid["drifted"]
    print(f"drifted features: native {native['drifted']}, Evidently {evid['drifted']} "
          f"({'same' if same else 'DIFFERENT'}); max relative score difference "
          f"{max_rel(native['scores'], evid['scores']):.1e}")


def max_rel(a: dict, b: dict) -> float:
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in a)


# -- children: one engine each --------------------------------------------------------------------

def save_reference(data_dir: str, db_url: str) -> None:
    """The Production version's reference sample with its predictions, for the child processes
    (so that they do not load the model, whose memory would hide the report's)."""
    from app.container import build
    from app.ml.features import LEVELS
    from app.monitoring.drift_service import training_vocabulary
    from app.serving.loaded_model import to_frame

    async def load():
        async with build(settings_for(data_dir, db_url)) as container:
            return await container.slot.load(await container.slot.resolve())

    model = asyncio.run(load())
    proba = model.predict_proba(to_frame(model.reference.to_dict("records")))
    held_out = model.predict_proba(to_frame(model.holdout.to_dict("records"))).max(axis=1)
    model.reference.to_parquet(os.path.join(data_dir, "bench-reference.parquet"), index=False)
    with open(os.path.join(data_dir, "bench-reference.json"), "w") as fh:
        json.dump({"vocabulary": {k: sorted(v) for k, v in training_vocabulary(model).items()},
                   "predicted": [LEVELS[i] for i in proba.argmax(axis=1)],
                   "confidence": held_out.tolist()}, fh)


async def load_engine(data_dir: str, db_url: str):
    from app.container import build
    from app.explanations.engine import ExplanationEngine

    async with build(settings_for(data_dir, db_url)) as container:
        model = await container.slot.load(await container.slot.resolve())
    return await asyncio.to_thread(ExplanationEngine, model)


def load_reference(data_dir: str):
    import numpy as np
    import pandas as pd

    from app.monitoring.data import Reference

    frame = pd.read_parquet(os.path.join(data_dir, "bench-reference.parquet"))
    with open(os.path.join(data_dir, "bench-reference.json")) as fh:
        meta = json.load(fh)
    vocabulary = {k: set(v) for k, v in meta["vocabulary"].items()}
    reference = Reference.build(MODEL, "1", frame, meta["predicted"], vocabulary)
    reference.confidence, reference.confidence_source = np.asarray(meta["confidence"]), "holdout"
    return reference


async def read(db_url: str, rows: int):
    # An engine alone, not container.build: this child measures the window's memory, and the
    # container would import MLflow and friends into it.
    from app.config import DriftSettings
    from app.db.engine import create_engine
    from app.monitoring.window_reader import read_window

    engine = create_engine(db_url)
    end = datetime.now(UTC)
    try:
        # As the service reads it: time slices side by side (FS_DRIFT_READ_CONNECTIONS).
        return await read_window(engine, MODEL, "1", end - timedelta(days=1), end, max_rows=rows,
                                 connections=DriftSettings().read_connections)
    finally:
        await engine.dispose()


async def phase_native(args) -> dict:
    from app.monitoring.drift_service import _held_out_importance, _importance, _sample_rows
    from app.monitoring.model_drift import confidence_drift, importance_drift
    from app.monitoring.native import run_native

    reference = load_reference(args.data_dir)
    # The model and its explanation engine are loaded in a serving worker before any report, and
    # the held-out rows' importance is cached per version: set up outside the timing.
    engine = await load_engine(args.data_dir, args.db_url)
    reference_importance, reference_rows = _held_out_importance(engine, engine.model.holdout, 200)
    base = reset_peak()
    t0 = time.perf_counter()
    window = await read(args.db_url, args.rows)
    t1 = time.perf_counter()
    result = run_native(reference, window, 0.5)
    t_tests = time.perf_counter()
    # The sections on the model itself, as the drift service adds them to every report.
    result.confidence_drift = confidence_drift(reference, window, 0.01, 100)
    t_confidence = time.perf_counter()
    current, rows = _importance(engine, _sample_rows(window, 200))
    result.importance_drift = importance_drift(engine.feature_names, reference_importance, current,
                                               reference_rows, rows, 0.1, "holdout")
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "compute_s": t2 - t1, "total_s": t2 - t0, "tests_s": t_tests - t1,
            "confidence_s": t_confidence - t_tests, "importance_s": t2 - t_confidence, "base_mb": base,
            "peak_mb": peak_mb(), "current_rows": result.current_rows,
            "reference_rows": result.reference_rows, "methods": [f.method for f in result.features],
            "drifted": result.drifted_features, "scores": {f.feature: f.score for f in result.features}}


async def phase_evidently(args) -> dict:
    from app.monitoring import evidently_engine

    t = time.perf_counter()
    evidently_engine.load()
    import_s = time.perf_counter() - t
    reference = load_reference(args.data_dir)
    from app.container import freeze_start_up_heap

    freeze_start_up_heap()  # as the native phase's container build did (and a service worker's)
    t0 = time.perf_counter()
    frame = (await read(args.db_url, args.rows)).to_pandas()
    t1 = time.perf_counter()
    base = reset_peak()  # the frame is loaded: what follows is Evidently's own
    snapshot = evidently_engine.run_snapshot(reference.frame, frame, 0.5, {}, {})
    features = evidently_engine.normalise(snapshot)
    t2 = time.perf_counter()
    return {"import_s": import_s, "read_s": t1 - t0, "compute_s": t2 - t1, "base_mb": base,
            "peak_mb": peak_mb(), "drifted": [f.feature for f in features if f.drifted],
            "scores": {f.feature: f.score for f in features}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-dsn", default=os.environ.get(
        "FS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--phase", choices=["native", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "native":
        print(json.dumps(asyncio.run(phase_native(args))))
    elif args.phase == "evidently":
        print(json.dumps(asyncio.run(phase_evidently(args))))
    else:
        main_parent(args)


if __name__ == "__main__":
    main()
