"""Batch scoring benchmark: ``future-skills score`` vs ``mlflow models predict``, same model, same file.

    .venv/bin/python -m bench.score [--rows 200000] [--data-dir var/bench] [--repeat 1]

Trains (or reuses) the registered demo model in the data dir's MLflow registry (``bench.serving``'s
bootstrap), writes a seeded synthetic input of ``--rows`` rows (the training data generator, no
label) as CSV and as Parquet, then times, end to end and wall clock (process start, imports,
model load, reading, scoring and writing included):

- ``future-skills score`` CSV -> CSV and Parquet -> Parquet;
- ``mlflow models predict -m models:/future-skills-model@production -t csv --env-manager local``
  on the same CSV (it writes JSON).

Labels are compared row by row (ours CSV, ours Parquet and MLflow's must be identical); the
figures are rows/s and the ratio ours/MLflow (issue 15's target: at least 5x on 200,000 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

try:  # python -m bench.score (from the repo root: this checkout's `app` is imported)
    from bench.serving import MODEL_NAME, REPO, base_env, ensure_model
except ImportError:  # python bench/score.py
    from serving import MODEL_NAME, REPO, base_env, ensure_model

PY = sys.executable
MLFLOW = str(Path(PY).parent / "mlflow")


def write_inputs(directory: Path, rows: int, seed: int) -> tuple[Path, Path]:
    from app.ml.synthetic import generate

    directory.mkdir(parents=True, exist_ok=True)
    frame = generate(rows, seed=seed, with_label=False)
    csv, parquet = directory / f"input-{rows}.csv", directory / f"input-{rows}.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return csv, parquet


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of ``command``."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command[:4])} failed ({proc.returncode}):\n{err.read()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes


def ours(source: Path, target: Path, env: dict[str, str], chunk_rows: int) -> tuple[float, float]:
    target.unlink(missing_ok=True)
    return timed([PY, "-m", "app.cli", "score", "--input", str(source), "--output", str(target),
                  "--chunk-rows", str(chunk_rows)], env)


def mlflow_predict(source: Path, target: Path, env: dict[str, str]) -> tuple[float, float]:
    target.unlink(missing_ok=True)
    return timed([MLFLOW, "models", "predict", "-m", f"models:/{MODEL_NAME}@production",
                  "-i", str(source), "-t", "csv", "-o", str(target), "--env-manager", "local"], env)


def our_phases(data_dir: Path, output: Path) -> dict[str, float]:
    """Model load and scoring seconds of our last run writing ``output``, from its MLflow record."""
    from mlflow import MlflowClient

    from app.batch_scoring.record import BATCH_EXPERIMENT

    client = MlflowClient(f"sqlite:///{data_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(BATCH_EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id],
                               filter_string=f"params.output_path = '{output}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return {"load": run.data.metrics["model_load_s"], "score": run.data.metrics["duration_s"]}


def labels_of(path: Path) -> list[str]:
    if path.suffix == ".json":
        return [str(v) for v in json.loads(path.read_text())["predictions"]]
    table = pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)
    return [str(v) for v in table.column("level").to_pylist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command; the best counts")
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "bench")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()

    ensure_model(data_dir)
    work = data_dir / "score"
    csv, parquet = write_inputs(work, args.rows, args.seed)
    print(f"input: {args.rows:,} rows, {csv.stat().st_size / 1e6:.1f} MB CSV, "
          f"{parquet.stat().st_size / 1e6:.1f} MB Parquet", flush=True)
    env_ours = base_env(data_dir)
    env_ours.pop("MLFLOW_TRACKING_URI")  # the service's embedded default is the same SQLite file
    env_mlflow = base_env(data_dir)
    outputs = {"ours csv": work / "ours.csv", "ours parquet": work / "ours.parquet",
               "mlflow csv": work / "mlflow.json"}
    runs = {
        "ours csv": lambda: ours(csv, outputs["ours csv"], env_ours, args.chunk_rows),
        "ours parquet": lambda: ours(parquet, outputs["ours parquet"], env_ours, args.chunk_rows),
        "mlflow csv": lambda: mlflow_predict(csv, outputs["mlflow csv"], env_mlflow),
    }
    seconds: dict[str, float] = {}
    for name, command in runs.items():
        seconds[name], rss = min(command() for _ in range(args.repeat))
        phases = ""
        if name.startswith("ours"):
            inside = our_phases(data_dir, outputs[name])
            phases = (f"  (model load {inside['load']:.2f} s, read+check+predict+write "
                      f"{inside['score']:.2f} s = {args.rows / inside['score']:,.0f} rows/s, "
                      f"the rest: process start, imports, registry, MLflow record)")
        print(f"{name:>13}: {seconds[name]:7.2f} s  {args.rows / seconds[name]:10,.0f} rows/s  "
              f"peak RSS {rss:,.0f} MiB{phases}", flush=True)

    reference = labels_of(outputs["mlflow csv"])
    for name in ("ours csv", "ours parquet"):
        got = labels_of(outputs[name])
        differ = sum(a != b for a, b in zip(got, reference, strict=False)) + abs(len(got) - len(reference))
        print(f"labels {name} vs mlflow: {'identical' if differ == 0 else f'{differ} differ'} "
              f"({len(got):,} rows)")
    base = seconds["mlflow csv"]
    print(f"ratio (MLflow time / ours, same CSV): {base / seconds['ours csv']:.2f}x "
          f"(target >= 5x); Parquet in/out: {base / seconds['ours parquet']:.2f}x")


if __name__ == "__main__":
    main()
