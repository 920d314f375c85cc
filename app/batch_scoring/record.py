"""What a batch run leaves behind: one MLflow run, and optionally its rows in the prediction log.

MLflow is written through the registry's ``MlflowClient`` (never the fluent API's process-wide
state), as the drift check does; the experiment is the platform's prediction experiment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from app.batch_scoring.score import ScoredChunk, ScoringResult
from app.ml.features import FEATURE_NAMES, LEVELS
from app.prediction_log.ids import new_id
from app.prediction_log.records import PredictionRecord, encode
from app.registry.client import ModelRegistry, VersionRef

BATCH_EXPERIMENT = "future-skills-prediction"
PROTOCOL = "batch"


@dataclass(frozen=True)
class BatchRun:
    """One finished ``future-skills score``."""

    model: VersionRef
    input_path: Path
    output_path: Path
    input_format: str
    output_format: str
    input_sha256: str
    chunk_rows: int
    result: ScoringResult
    load_seconds: float
    logged_predictions: bool


def log_run(registry: ModelRegistry, run: BatchRun) -> str:
    """The MLflow run of a batch scoring (blocking: call it in a thread); returns its id."""
    client = registry.client
    experiment_id = registry.ensure_experiments((BATCH_EXPERIMENT,))[BATCH_EXPERIMENT]
    model = run.model
    mlflow_run = client.create_run(
        experiment_id,
        run_name=f"batch score {model.name} v{model.version}",
        tags={"kind": "batch-scoring", "model_name": model.name, "model_version": model.version,
              "model_semver": model.semver or "", "input_sha256": run.input_sha256},
    )
    run_id: str = mlflow_run.info.run_id
    try:
        now = int(time.time() * 1000)
        result = run.result
        metrics = [
            Metric("rows", float(result.rows), now, 0),
            Metric("duration_s", result.seconds, now, 0),
            Metric("rows_per_s", result.rows_per_s, now, 0),
            Metric("model_load_s", run.load_seconds, now, 0),
            Metric("chunks", float(result.chunks), now, 0),
        ]
        params = [
            Param("input_path", str(run.input_path)),
            Param("output_path", str(run.output_path)),
            Param("input_format", run.input_format),
            Param("output_format", run.output_format),
            Param("input_sha256", run.input_sha256),
            Param("rows", str(result.rows)),
            Param("chunk_rows", str(run.chunk_rows)),
            Param("model_name", model.name),
            Param("model_version", model.version),
            Param("logged_predictions", str(run.logged_predictions)),
        ]
        client.log_batch(run_id, metrics=metrics, params=params,
                         tags=[RunTag("model_run_id", model.run_id or "")])
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def prediction_lines(model: VersionRef, chunk: ScoredChunk, batch_id: str) -> list[bytes]:
    """The chunk's rows as prediction log records (spool lines), protocol ``batch``.

    ``request_id`` is the scoring's id, so every row of one run can be found (or purged) together.
    """
    created = datetime.now(UTC)
    features = chunk.frame[list(FEATURE_NAMES)].to_dict("records")
    return [
        encode(PredictionRecord(
            id=new_id(), created_at=created, model_name=model.name, model_version=model.version,
            features=row, level=level,
            probabilities={name: float(p) for name, p in zip(LEVELS, probs, strict=True)},
            score=float(score), latency_ms=0.0, request_id=batch_id, protocol=PROTOCOL,
        ))
        for row, level, probs, score in zip(features, chunk.levels, chunk.proba.tolist(),
                                            chunk.scores.tolist(), strict=True)
    ]
