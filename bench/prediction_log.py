"""Benchmark of the prediction log, in one run:

1. ingestion into Postgres: rows/s for COPY-via-staging and for multi-row INSERT, both with
   ON CONFLICT DO NOTHING (and the cost of replaying rows that are already stored);
2. request-latency cost of each spool durability (fsync / os / none) against logging off, on the
   real prediction path (real trained model, predict in a thread) at 1 and at 8 concurrent callers.

    python -m bench.prediction_log [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Needs a Postgres server (it creates and drops a scratch database). Trains a small model in a
temporary MLflow registry first (~20 s). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import asyncpg

from app.config import BatchSettings, ModelSettings, Settings, SpoolSettings, TrainingSettings
from app.container import build
from app.db.dialect import ingest_ignoring_duplicates
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.tables import Prediction
from app.ml.synthetic import generate
from app.prediction_log.ingest import LogSink
from app.prediction_log.log import PredictionRecord
from app.prediction_log.records import PREDICTION, encode
from app.serving.core import PredictionService


def _records(n: int, items: list[dict]) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [
        PredictionRecord(
            id=uuid.uuid4(), created_at=now, model_name="future-skills-model", model_version="1",
            features=items[i % len(items)], level="HIGH",
            probabilities={"LOW": 0.1, "MEDIUM": 0.3, "HIGH": 0.6}, score=75.0, latency_ms=6.0,
            request_id=uuid.uuid4().hex, protocol="v1", subject_hash=None,
        )
        for i in range(n)
    ]


def _writer(engine, method: str, records: list[PredictionRecord], batch: int):
    """Batch ``i`` written as the drainer writes it: COPY takes the spool lines, INSERT the rows."""
    if method == "copy":
        sink = LogSink(engine=engine, method=method)
        lines = [encode(r) for r in records]
        return lambda i: sink.write(PREDICTION, lines[i : i + batch])
    rows = [r.as_row() for r in records]
    return lambda i: ingest_ignoring_duplicates(engine, Prediction.__table__, rows[i : i + batch], method)


async def bench_ingestion(admin_dsn: str, total: int, batch: int) -> None:
    name = f"fs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    items = generate(500, seed=3, with_label=False).to_dict("records")
    try:
        await upgrade(url)
        engine = create_engine(url)
        print(f"\n== Postgres ingestion: {total} rows in batches of {batch} ==")
        print(f"{'method':<8} {'new rows/s':>12} {'replay rows/s':>14}")
        for method in ("copy", "insert", "copy", "insert"):  # twice each: the first warms up
            write = _writer(engine, method, _records(total, items), batch)
            started = time.perf_counter()
            for i in range(0, total, batch):
                await write(i)
            fresh = total / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, total, batch):
                await write(i)
            replay = total / (time.perf_counter() - started)
            print(f"{method:<8} {fresh:>12,.0f} {replay:>14,.0f}")
        await engine.dispose()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class _NoLog:
    """Logging off: the baseline the durability levels are compared with (bench only)."""

    async def record_rows(self, rows) -> None:  # what the prediction core calls
        return None


async def _latencies(service: PredictionService, items: list[dict], concurrency: int, requests: int):
    lat: list[float] = []
    per = requests // concurrency

    async def caller(k: int) -> None:
        for j in range(per):
            row = [items[(k * per + j) % len(items)]]
            t = time.perf_counter()
            await service.predict(row)
            lat.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    return lat, len(lat) / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _cell(settings: Settings, model, log_on: bool):
    """One cell's request path, built as the service builds it (``container.build``): admission,
    deadline, micro-batching, the prediction log; ``model`` is installed, not loaded again."""
    async with build(settings) as container:
        container.slot.install(model)
        if log_on:
            await container.prediction_log.start()
        else:  # logging off: the baseline the durability levels are compared with (bench only)
            container.predictions.log = _NoLog()
        await container.predictions.start()
        try:
            yield container
        finally:
            await container.predictions.stop()
            if log_on:
                await container.prediction_log.stop()


async def bench_durability(work: Path, requests: int) -> None:
    from app.training.train import train

    settings = Settings(
        data_dir=work, training=TrainingSettings(rows=4000, n_estimators=100, reference_rows=500),
        model=ModelSettings(), batch=BatchSettings(enabled=True),
    )
    settings.ensure_dirs()
    await upgrade(settings.db_url)
    print("\ntraining a 100-tree model for the latency part ...", flush=True)
    async with build(settings) as container:
        await train(container)
        model = await container.slot.load_production()
    items = generate(500, seed=5, with_label=False).to_dict("records")

    # The database is a local SQLite file: the drainer runs, but the request path never waits for it.
    # Modes are interleaved in rounds, so a change in machine load hits all of them alike.
    modes = ("off", "none", "os", "fsync")
    rounds = 4
    print(f"\n== request latency by durability: real predict path, one-item requests, "
          f"{rounds} interleaved rounds x {requests // rounds} per cell (ms) ==")
    print(f"{'durability':<10} {'callers':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'req/s':>7} "
          f"{'p50 cost vs off':>16}")
    for concurrency in (1, 8):
        lat: dict[str, list[float]] = {m: [] for m in modes}
        rate: dict[str, list[float]] = {m: [] for m in modes}
        syncs = 0
        for r in range(rounds):
            for mode in modes:
                spool = SpoolSettings(durability="os" if mode == "off" else mode,
                                      dir=work / f"spool-{mode}-{concurrency}-{r}")
                cell_settings = settings.model_copy(update={"spool": spool})
                async with _cell(cell_settings, model, mode != "off") as c:
                    await _latencies(c.predictions, items, concurrency, 16)  # warm-up
                    synced_before = c.prediction_log.writer.syncs
                    cell, cell_rate = await _latencies(c.predictions, items, concurrency,
                                                       requests // rounds)
                    if mode == "fsync":
                        syncs += c.prediction_log.writer.syncs - synced_before
                lat[mode] += cell
                rate[mode].append(cell_rate)
        base = statistics.median(lat["off"])
        for mode in modes:
            q = statistics.quantiles(lat[mode], n=100)
            p50 = statistics.median(lat[mode])
            cost = "" if mode == "off" else f"{p50 - base:+.2f}"
            extra = f" ({syncs} fsyncs for {len(lat[mode])} requests)" if mode == "fsync" else ""
            print(f"{mode:<10} {concurrency:>7} {p50:>7.2f} {q[89]:>7.2f} {q[98]:>7.2f} "
                  f"{statistics.median(rate[mode]):>7.0f} {cost:>16}{extra}", flush=True)

    print("\n== record() alone, no model: 2,000 one-record appends (microseconds per call) ==")
    variants = [("none", 0.0), ("os", 0.0), ("fsync", 0.0), ("fsync", 2.0)]
    for concurrency in (1, 16):
        for mode, wait_ms in variants:
            spool = SpoolSettings(durability=mode, group_commit_wait_ms=wait_ms,
                                  dir=work / f"spool-micro-{mode}-{wait_ms}-{concurrency}")
            async with build(settings.model_copy(update={"spool": spool})) as container:
                log = container.prediction_log
                await log.start()
                recs = _records(2000, items)
                micro: list[float] = []

                async def one(chunk, log=log, micro=micro):
                    for rec in chunk:
                        t = time.perf_counter()
                        await log.record([rec])
                        micro.append((time.perf_counter() - t) * 1e6)

                await asyncio.gather(*(one(recs[k::concurrency]) for k in range(concurrency)))
                syncs = log.writer.syncs
                await log.stop()
            label = f"{mode}" + (f" (wait {wait_ms:g} ms)" if mode == "fsync" else "")
            q = statistics.quantiles(micro, n=100)
            print(f"{label:<20} callers {concurrency:>2}: median {statistics.median(micro):7.0f}  "
                  f"p99 {q[98]:7.0f}" + (f"  fsyncs {syncs}" if mode == "fsync" else ""), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=os.environ.get("FS_TEST_PG_DSN",
                                                      "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    await bench_ingestion(args.pg, args.rows, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        await bench_durability(Path(tmp), args.requests)


if __name__ == "__main__":
    asyncio.run(main())
