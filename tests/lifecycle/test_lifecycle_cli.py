"""The lifecycle commands: promote, rollback, models, runs, cleanup, train --auto-promote --bump."""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from app.cli.main import app as cli_app
from app.db.engine import create_engine
from app.db.tables import ModelPromotion
from tests.support.lifecycle import MODEL, lifecycle_settings

DAY_MS = 86_400_000


def run_cli(data_dir: Path, *args: str, code: int = 0, stdout: bool = False) -> str:
    """Invoke the command in-process (fast); the CLI's logging set-up is undone afterwards.

    The output as a terminal shows it (stdout and stderr), or with ``stdout`` stdout alone: what
    ``--json`` promises to keep pure, while log lines (say of another test's model still compiling
    in this process) go to stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli_app, list(args), env={"FS_DATA_DIR": str(data_dir)})
    finally:
        root.handlers, root.level = handlers, level
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout if stdout else result.output


def _audit(settings) -> list[dict]:
    import asyncio

    from sqlalchemy import select

    async def rows():
        engine = create_engine(settings.db_url)
        try:
            async with engine.connect() as conn:
                query = select(ModelPromotion.__table__).order_by(ModelPromotion.created_at)
                return [dict(r) for r in (await conn.execute(query)).mappings().all()]
        finally:
            await engine.dispose()

    return asyncio.run(rows())


def test_promote_rollback_list_and_archive(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    production = lambda: str(mlflow.get_model_version_by_alias(MODEL, "production").version)  # noqa: E731

    dry = run_cli(lifecycle_dir, "promote", "2", "--dry-run")
    assert "decision: promote" in dry and production() == "1"
    done = run_cli(lifecycle_dir, "promote", "2", "--reason", "cli test")
    assert "version 2 is now Production (was 1)" in done and production() == "2"
    assert "already" in run_cli(lifecycle_dir, "promote", "2", code=2)
    listed = json.loads(run_cli(lifecycle_dir, "models", "list", "--json", stdout=True))
    assert [(v["version"], v["semver"], v["aliases"]) for v in listed] == [
        ("2", "1.1.0", ["production"]), ("1", "1.0.0", [])]
    table = run_cli(lifecycle_dir, "models", "list").splitlines()
    for v in listed:  # not cut to 80 columns: each row holds its whole run id and timestamp
        row = next(line for line in table if line.startswith(f"│ {v['version']} "))
        assert v["run_id"] in row and v["created_at"] in row, row
    assert "rolled back: version 1 is Production (was 2)" in run_cli(lifecycle_dir, "rollback")
    assert production() == "1"

    actor = f"cli:{getpass.getuser()}"
    assert [(a["actor"], a["action"], a["from_version"], a["to_version"], a["outcome"], a["reason"])
            for a in _audit(settings)] == [
        (actor, "promote", "1", "2", "success", "cli test"),
        (actor, "promote", "2", "2", "refused", None),
        (actor, "rollback", "2", "1", "success", None),
    ]

    # Archive: keep the newest version and Production (1); 2 and 3 go.
    v1 = mlflow.get_model_version(MODEL, "1")
    for _ in range(2):
        mlflow.create_model_version(MODEL, mlflow.get_model_version_download_uri(MODEL, "1"),
                                    run_id=v1.run_id)
    assert "would archive 2 version(s): 2, 3" in run_cli(lifecycle_dir, "models", "archive", "--keep", "1")
    assert mlflow.get_model_version(MODEL, "2").tags.get("archived") is None
    applied = run_cli(lifecycle_dir, "models", "archive", "--keep", "1", "--apply")
    assert "archived 2 version(s): 2, 3" in applied
    listed = {v["version"]: v
              for v in json.loads(run_cli(lifecycle_dir, "models", "list", "--json", stdout=True))}
    assert [v for v in sorted(listed) if listed[v]["archived"]] == ["2", "3"]
    assert listed["2"]["stage"] == "Archived" and listed["1"]["aliases"] == ["production"]
    assert "would archive 0 version(s)" in run_cli(lifecycle_dir, "models", "archive", "--keep", "1")


@pytest.fixture
def runs_registry(tmp_path):
    """Real MLflow runs: two old (one behind a registered version), one new, one without metrics."""
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("model-training", artifact_location=(tmp_path / "art").as_uri())
    now = int(time.time() * 1000)
    runs = {}
    for key, age_days, f1, trees in (("old", 100, 0.60, "10"), ("old_registered", 95, 0.70, "20"),
                                     ("new", 0.001, 0.65, "50"), ("bare", 120, None, None)):
        run = client.create_run(experiment, start_time=int(now - age_days * DAY_MS), run_name=key)
        if f1 is not None:
            client.log_metric(run.info.run_id, "f1_macro", f1)
            client.log_metric(run.info.run_id, "accuracy", f1 + 0.05)
            client.log_param(run.info.run_id, "n_estimators", trees)
        client.set_terminated(run.info.run_id, end_time=int(now - age_days * DAY_MS) + 1000)
        runs[key] = run.info.run_id
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, (tmp_path / "art" / "model").as_uri(), run_id=runs["old_registered"])
    return tmp_path, client, runs


def test_runs_search_compare_best(runs_registry):
    data_dir, _, runs = runs_registry
    found = json.loads(run_cli(data_dir, "runs", "search", "-e", "model-training", "--filter",
                               "metrics.f1_macro > 0.62", "--order", "metrics.f1_macro DESC", "--json",
                               stdout=True))
    assert [r["run_id"] for r in found] == [runs["old_registered"], runs["new"]]
    assert found[0]["metrics"]["f1_macro"] == 0.70
    table = run_cli(data_dir, "runs", "search")
    assert all(name in table for name in runs)
    assert "invalid search" in run_cli(data_dir, "runs", "search", "--filter", "metrics.f1 >>> 1", code=2)

    compared = json.loads(run_cli(data_dir, "runs", "compare", runs["old"], runs["new"], "--json",
                                  stdout=True))
    assert compared["params"]["n_estimators"] == ["10", "50"]
    assert compared["metrics"]["f1_macro"] == [0.60, 0.65]

    best = json.loads(run_cli(data_dir, "runs", "best", "--metric", "f1_macro", "--json", stdout=True))
    assert [r["run_id"] for r in best] == [runs["old_registered"]]
    worst = json.loads(run_cli(data_dir, "runs", "best", "--metric", "f1_macro", "--lowest", "--json",
                               stdout=True))
    assert [r["run_id"] for r in worst] == [runs["old"]]
    assert "no run has the metric" in run_cli(data_dir, "runs", "best", "--metric", "nope", code=2)


def test_cleanup_runs_is_a_dry_run_unless_applied(runs_registry):
    data_dir, client, runs = runs_registry
    dry = run_cli(data_dir, "cleanup", "runs", "--older-than", "90d")
    assert "would delete (dry run; add --apply) 2 run(s)" in dry
    assert runs["old"] in dry and runs["bare"] in dry and runs["old_registered"] not in dry
    assert {client.get_run(r).info.lifecycle_stage for r in runs.values()} == {"active"}

    assert "deleted 2 run(s)" in run_cli(data_dir, "cleanup", "runs", "--older-than", "90d", "--apply")
    stages = {key: client.get_run(r).info.lifecycle_stage for key, r in runs.items()}
    assert stages == {"old": "deleted", "bare": "deleted", "old_registered": "active", "new": "active"}
    # "new" started 86 s before the fixture ran: only it is older than 60 s among what is left.
    assert "1 run(s)" in run_cli(data_dir, "cleanup", "runs", "--older-than", "60s")
    assert "expected a number and a unit" in run_cli(data_dir, "cleanup", "runs", "--older-than",
                                                   "soon", code=2)


def test_train_with_bump_override_and_auto_promotion(lifecycle_dir):
    """The real command in a subprocess: a better model is promoted by the policy, as 2.0.0."""
    own = ("FS_", "MLFLOW_TRACKING", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env |= {"FS_DATA_DIR": str(lifecycle_dir), "FS_TRAIN_ROWS": "2000", "FS_TRAIN_N_ESTIMATORS": "10",
            "FS_TRAIN_REFERENCE_ROWS": "200", "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", "--seed", "9", "--bump", "major", "--auto-promote"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "semver 2.0.0 (major)" in result.stdout
    assert "decision: promote" in result.stdout
    assert "version 3 is now Production (was 1)" in result.stdout
    settings = lifecycle_settings(lifecycle_dir)
    version = MlflowClient(settings.tracking_uri, settings.registry_uri).get_model_version(MODEL, "3")
    assert (version.tags["semver"], version.tags["change_type"]) == ("2.0.0", "major")
    assert json.loads(version.tags["fs.record"])["bump_overridden"] is True  # detected: minor
    audit = _audit(settings)
    assert [(a["action"], a["from_version"], a["to_version"], a["outcome"]) for a in audit] == [
        ("auto", "1", "3", "success")]


def _registry_state(client: MlflowClient) -> dict:
    """Everything a training run could change: versions with tags/aliases/stages, the registered
    model's tags and aliases, and the runs of every experiment."""
    model = client.get_registered_model(MODEL)
    versions = sorted((v.version, v.current_stage, v.run_id, v.source, dict(v.tags))
                      for v in client.search_model_versions(f"name = '{MODEL}'"))
    runs = sorted(r.info.run_id for e in client.search_experiments()
                  for r in client.search_runs([e.experiment_id]))
    return {"aliases": dict(model.aliases), "tags": dict(model.tags), "versions": versions,
            "runs": runs, "experiments": sorted(e.name for e in client.search_experiments())}


def test_train_dry_run_reports_the_decision_and_changes_nothing(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    client = MlflowClient(settings.tracking_uri, settings.registry_uri)
    before = _registry_state(client)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(
            cli_app, ["train", "--seed", "9", "--auto-promote", "--dry-run"],
            env={"FS_DATA_DIR": str(lifecycle_dir), "FS_TRAIN_ROWS": "2000",
                 "FS_TRAIN_N_ESTIMATORS": "10", "FS_TRAIN_REFERENCE_ROWS": "200"})
    finally:
        root.handlers, root.level = handlers, level
    assert result.exit_code == 0, (result.output, result.exception)
    # Version 1 (Production) is the weak forest: the policy would promote the candidate, which
    # changes hyperparameters only (minor) and would follow 1.1.0 (version 2) as 1.2.0.
    assert "candidate (dry run)" in result.output
    assert "would be registered as semver 1.2.0 (minor)" in result.output
    assert "policy: version candidate vs Production 1" in result.output
    assert "decision: promote" in result.output and "loads" in result.output
    assert "dry run: nothing changed" in result.output
    assert _registry_state(client) == before
    assert not (lifecycle_dir / "predictions.db").exists()  # not even a training_run row
