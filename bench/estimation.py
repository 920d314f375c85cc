"""Label-free performance estimation against the truth, on generated traffic with known labels.

    .venv/bin/python -m bench.estimation [--data-dir var/bench] [--rows 5000]

Trains the demo model (20,000 rows, 100 trees) into the data dir unless it holds one. For each
window — unshifted traffic (three seeds) and traffic with two or three important features
shifted — it scores the rows with the served version, logs them to a scratch SQLite prediction
log exactly as the service stores them (no feedback), asks the service's estimation for the
window's accuracy and macro-F1, and prints them beside the true figures computed from the labels
the estimate never saw. The issue's bounds: |estimate - truth| <= 0.03 unshifted, <= 0.08 shifted,
and the estimate moves in the direction the truth moves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from app.config import Settings
from app.container import build
from app.db.dialect import insert_ignoring_duplicates
from app.db.migrate import upgrade
from app.db.tables import Prediction
from app.ml.features import FEATURE_NAMES, LEVELS, TARGET
from app.ml.synthetic import generate
from app.monitoring.windows import TimeWindow
from app.serving.loaded_model import LoadedModel

WINDOWS: list[tuple[str, int, tuple[str, ...]]] = [
    ("unshifted", 101, ()),
    ("unshifted", 102, ()),
    ("unshifted", 103, ()),
    ("trend + scarcity", 104, ("trend_score", "scarcity_index")),
    ("trend + scarcity + hiring", 105, ("trend_score", "scarcity_index", "hiring_difficulty")),
    ("horizon + trend + hiring", 106, ("horizon_years", "trend_score", "hiring_difficulty")),
    ("usage + economy + requests", 107, ("internal_usage", "economic_indicator",
                                         "training_requests")),
]


async def _log(settings: Settings, model: LoadedModel, frame_rows: list[dict[str, object]],
               proba: np.ndarray) -> None:
    now = datetime.now(UTC)
    rows = [
        {"id": uuid.uuid4(), "created_at": now - timedelta(seconds=1), "model_name": model.name,
         "model_version": model.version, "features": features,
         "level": LEVELS[int(p.argmax())], "probabilities": dict(zip(LEVELS, map(float, p), strict=True)),
         "score": 0.0, "latency_ms": 1.0, "request_id": None, "protocol": "v1",
         "subject_hash": None}
        for features, p in zip(frame_rows, proba, strict=True)
    ]
    async with build(settings) as container:
        for first in range(0, len(rows), 2000):
            async with container.engine.begin() as conn:
                await insert_ignoring_duplicates(conn, Prediction.__table__, rows[first:first + 2000])


async def _window(base: Settings, model: LoadedModel, seed: int, shift: tuple[str, ...],
                  rows: int) -> dict[str, float]:
    df = generate(rows, seed=seed, shift=shift)
    records = df[list(FEATURE_NAMES)].to_dict("records")
    proba = model.predict_rows(records)
    truth = df[TARGET].to_numpy()
    predicted = np.asarray(LEVELS)[proba.argmax(axis=1)]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'log.db'}"
        settings = base.model_copy(update={"database_url": url})
        await upgrade(url)
        await _log(settings, model, records, proba)
        async with build(settings) as container:
            window = TimeWindow.last(timedelta(hours=1))
            _, overall, _ = await container.estimation.by_bucket(
                window, 3600.0, model.name, model.version)
    assert overall is not None and overall.rows == rows
    return {
        "true_accuracy": float((predicted == truth).mean()),
        "estimated_accuracy": overall.accuracy,
        "low": overall.accuracy_interval[0], "high": overall.accuracy_interval[1],
        "true_f1": float(f1_score(truth, predicted, average="macro", labels=list(LEVELS))),
        "estimated_f1": overall.f1_macro,
    }


async def _main(data_dir: Path, rows: int) -> None:
    from app.training.train import train

    settings = Settings(data_dir=data_dir.resolve())
    settings.ensure_dirs()
    await upgrade(settings.db_url)
    async with build(settings) as container:
        try:
            model = await container.slot.load_production()
        except Exception:  # no model yet: train the demo model once
            print("training the demo model ...")
            await train(container)
            model = await container.slot.load_production()
        if model.calibration is None:
            raise SystemExit(f"version {model.version} has no calibration (trained before it "
                             "existed): use a fresh --data-dir")
    print(f"model {model.name} version {model.version}, {rows} rows per window, no feedback used")
    print(f"{'window':28} {'true acc':>9} {'est acc':>9} {'95% interval':>17} {'error':>7}"
          f" {'true F1':>8} {'est F1':>8}")
    base_true = base_est = None
    worst_unshifted = worst_shifted = 0.0
    same_direction = True
    for name, seed, shift in WINDOWS:
        r = await _window(settings, model, seed, shift, rows)
        error = r["estimated_accuracy"] - r["true_accuracy"]
        print(f"{name:28} {r['true_accuracy']:9.4f} {r['estimated_accuracy']:9.4f} "
              f"[{r['low']:.4f}, {r['high']:.4f}] {error:+7.4f} {r['true_f1']:8.4f} "
              f"{r['estimated_f1']:8.4f}")
        if not shift:
            worst_unshifted = max(worst_unshifted, abs(error))
            if base_true is None:
                base_true, base_est = r["true_accuracy"], r["estimated_accuracy"]
        else:
            worst_shifted = max(worst_shifted, abs(error))
            assert base_true is not None and base_est is not None
            same_direction &= bool(np.sign(r["true_accuracy"] - base_true)
                                   == np.sign(r["estimated_accuracy"] - base_est))
    print(f"worst |error| unshifted {worst_unshifted:.4f} (bound 0.03), shifted "
          f"{worst_shifted:.4f} (bound 0.08); estimate moves with the truth: {same_direction}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(_main(args.data_dir, args.rows))


if __name__ == "__main__":
    main()
