"""``future-skills score``: the real command (in-process), the real trained model, real files.

Labels must equal the pipeline's own ``predict``; probabilities and scores its ``predict_proba``
within 1e-5 (the compiled predictor sums leaves in float32). Several chunks per file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.batch_scoring.record import BATCH_EXPERIMENT
from app.cli.main import app as cli_app
from app.config import Settings
from app.db.engine import create_engine
from app.db.tables import Prediction
from app.ml.features import FEATURE_NAMES, LEVELS
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry

ROWS = 2_500
CHUNK = 700  # four chunks, the last one short


def score(settings: Settings, *args: str, code: int = 0) -> str:
    """The command in-process; the CLI's logging set-up is undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {"FS_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.db_url}
    try:
        result = CliRunner().invoke(cli_app, ["score", *args], env=env)
    finally:
        root.handlers, root.level = handlers, level
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@dataclass(frozen=True)
class Reference:
    """The Production version's own pipeline: what the command's output is compared with."""

    name: str
    version: str
    pipeline: Any


@pytest.fixture(scope="module")
def model(registry_dir: Path) -> Reference:
    settings = Settings(data_dir=registry_dir)
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    ref = registry.resolve(settings.model.name, settings.model.alias)
    return Reference(ref.name, ref.version, mlflow.sklearn.load_model(str(registry.download(ref))))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    frame = generate(ROWS, seed=31, with_label=False)
    frame.insert(0, "row_id", [f"r{i}" for i in range(ROWS)])
    return frame


def assert_matches_pipeline(out: pd.DataFrame, rows: pd.DataFrame, model: Reference) -> None:
    assert list(out.columns) == [*rows.columns, "level", "score", "prob_LOW", "prob_MEDIUM",
                                 "prob_HIGH"]
    assert out["row_id"].tolist() == rows["row_id"].tolist()
    features = rows[list(FEATURE_NAMES)]
    assert out["level"].tolist() == model.pipeline.predict(features).tolist()
    classes = list(model.pipeline.classes_)
    expected = model.pipeline.predict_proba(features)[:, [classes.index(c) for c in LEVELS]]
    got = out[[f"prob_{level}" for level in LEVELS]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["score"], 100 * (0.5 * expected[:, 1] + expected[:, 2]),
                               atol=1e-3, rtol=0)


def finished_run(settings: Settings, checksum: str):
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment = client.get_experiment_by_name(BATCH_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.input_sha256 = '{checksum}'")
    assert len(runs) == 1
    return runs[0]


def test_csv_in_csv_out_matches_the_pipeline_and_is_recorded(settings, model, rows, tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "out" / "scored.csv"
    rows.to_csv(source, index=False)
    output = score(settings, "--input", str(source), "--output", str(target),
                   "--chunk-rows", str(CHUNK))
    assert f"scored {ROWS:,} rows" in output
    assert_matches_pipeline(pd.read_csv(target), rows, model)

    checksum = hashlib.sha256(source.read_bytes()).hexdigest()
    run = finished_run(settings, checksum)
    assert run.info.status == "FINISHED" and run.info.run_id in output
    assert run.data.metrics["rows"] == ROWS and run.data.metrics["chunks"] == 4
    assert run.data.metrics["rows_per_s"] > 0
    assert run.data.tags["model_version"] == model.version
    assert run.data.tags["model_name"] == model.name
    assert run.data.params["input_path"] == str(source.resolve())
    assert run.data.params["output_path"] == str(target.resolve())


def test_parquet_in_parquet_out_matches_the_pipeline(settings, model, rows, tmp_path):
    source, target = tmp_path / "in.parquet", tmp_path / "scored.parquet"
    typed = rows.astype({"horizon_years": "int32", "job_role": "category"})  # types get normalised
    typed.to_parquet(source, index=False)
    score(settings, "--input", str(source), "--output", str(target), "--chunk-rows", str(CHUNK),
          "--model-version", model.version)
    out = pd.read_parquet(target)
    assert out["horizon_years"].dtype == np.int64
    assert_matches_pipeline(out, rows, model)


def test_csv_to_parquet_and_the_prediction_log(settings, model, rows, tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "scored.pq"
    rows.head(300).to_csv(source, index=False)
    output = score(settings, "--input", str(source), "--output", str(target), "--chunk-rows", "128",
                   "--log-predictions")
    assert_matches_pipeline(pd.read_parquet(target), rows.head(300), model)

    async def logged() -> list[tuple[str, str, int]]:
        engine = create_engine(settings.db_url)
        try:
            async with engine.connect() as conn:
                query = (select(Prediction.protocol, Prediction.request_id, func.count())
                         .group_by(Prediction.protocol, Prediction.request_id))
                return [tuple(r) for r in (await conn.execute(query)).all()]
        finally:
            await engine.dispose()

    [(protocol, request_id, count)] = asyncio.run(logged())
    assert (protocol, count) == ("batch", 300)
    assert request_id.startswith("batch:") and request_id in output


def _leftovers(directory: Path) -> list[str]:
    """Files besides the input and the prediction database (the ``settings`` fixture keeps it in
    the same directory; the command reads the stop switch there before it scores)."""
    return sorted(p.name for p in directory.iterdir()
                  if not p.name.startswith(("in.", "predictions.db")))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("horizon_years", 42, "invalid value in column 'horizon_years' at row 1234: must be at most 10"),
    ("trend_score", "high", "invalid value in column 'trend_score' at row 1234: must be a number"),
    ("skill", "", "invalid value in column 'skill' at row 1234: missing value"),
    ("training_requests", 2.5,
     "invalid value in column 'training_requests' at row 1234: must be a whole number"),
])
def test_a_bad_value_names_column_and_row_and_leaves_no_output(settings, rows, tmp_path, column,
                                                               value, message):
    bad = rows.astype({column: object})
    bad.loc[1233, column] = value  # the 1234th data row, in the second chunk
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    bad.to_csv(source, index=False)
    output = score(settings, "--input", str(source), "--output", str(target),
                   "--chunk-rows", "1000", code=2)
    [line] = [line for line in output.splitlines() if "invalid value" in line]
    assert line == message  # the whole message: the value itself is never echoed
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns=["scarcity_index", "department"]),
     "missing required column(s): department, scarcity_index"),
    (lambda f: f.assign(level="x"), "the input already has column(s) named level"),
    (lambda f: f.assign(job_role=7), "column 'job_role' holds int64; text is expected"),
])
def test_a_bad_column_is_named_and_leaves_no_output(settings, rows, tmp_path, change, message):
    source, target = tmp_path / "in.parquet", tmp_path / "out.csv"
    change(rows).to_parquet(source, index=False)
    output = score(settings, "--input", str(source), "--output", str(target), code=2)
    assert message in output
    assert _leftovers(tmp_path) == []


def test_a_suspended_model_scores_no_file(settings, rows, tmp_path):
    """The stop switch holds for batch files as for requests: exit 2 with the reason, no output."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {"FS_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.db_url}
    try:
        suspended = CliRunner().invoke(cli_app, ["models", "suspend", settings.model.name,
                                                 "--reason", "audit of the HR pilot"], env=env)
    finally:
        root.handlers, root.level = handlers, level
    assert suspended.exit_code == 0, suspended.output
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    rows.head(50).to_csv(source, index=False)
    output = score(settings, "--input", str(source), "--output", str(target), code=2)
    assert "suspended" in output and "audit of the HR pilot" in output
    assert not target.exists()
