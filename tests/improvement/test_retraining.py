"""Retraining proposals (issue 18): `retrain` after feedback files a proposal (challenger alias,
MLflow tags of trigger and window), its approval promotes through the policy or is refused with
the policy's reason, rejection, the CLI, and the drift trigger. Real registry, real models, real
databases; feedback through the HTTP API where the test is about the API."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli.main import app as cli_app
from app.config import DriftSettings, LifecycleSettings, RetrainSettings
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.tables import PredictionFeedback
from app.errors import NotEnoughFeedback
from app.ml.features import FEATURE_NAMES, TARGET
from app.ml.synthetic import generate
from app.monitoring.periodic_check import CHECK_JOB
from app.training.retrain import retrain
from tests.support.databases import sqlite_url
from tests.support.lifecycle import MODEL, admin, lifecycle_settings
from tests.support.monitoring import insert_feedback, insert_predictions, now, prediction_rows, wait_logged
from tests.support.running_app import RunningApp

PROPOSALS = f"/v1/models/{MODEL}/proposals"


def _mlflow(settings) -> MlflowClient:
    return MlflowClient(settings.tracking_uri, settings.registry_uri)


def _aliases(settings) -> dict[str, str]:
    return {a: str(v) for a, v in _mlflow(settings).get_registered_model(MODEL).aliases.items()}


async def _wait_feedback(db_url: str, expected: int, timeout: float = 30.0) -> None:
    engine = create_engine(db_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with engine.connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(PredictionFeedback))).scalar_one()
            if n >= expected:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{n} of {expected} feedback rows"
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def _seed(db_url: str, rows: int, with_feedback: int, seed: int, shift: tuple[str, ...] = ()):
    """Predictions of version 1 written straight into the log, the first ``with_feedback`` of
    them with their true level as feedback."""
    frame = generate(rows, seed=seed, shift=shift)
    logged = prediction_rows(frame, frame[TARGET], now())
    await insert_predictions(db_url, logged)
    await insert_feedback(db_url, [(r["id"], level, now())
                                   for r, level in zip(logged[:with_feedback], frame[TARGET], strict=False)])


async def test_retrain_after_feedback_proposes_and_approval_promotes_or_rejection_is_audited(
        lifecycle_dir, pg_url):
    settings = lifecycle_settings(lifecycle_dir, database_url=pg_url)
    truth = generate(30, seed=11)
    running = RunningApp(settings)
    async with running as client:
        items = truth[list(FEATURE_NAMES)].to_dict("records")
        answer = await client.post("/v1/predictions", json={"items": items})
        ids = [p["prediction_id"] for p in answer.json()["predictions"]]
        for pid, level in zip(ids[:20], truth[TARGET], strict=False):
            # A first, wrong answer, then the right one: the latest feedback is the label.
            for sent in ("HIGH" if level == "LOW" else "LOW", level):
                response = await client.post(f"/v1/predictions/{pid}/feedback",
                                             json={"actual_level": sent})
                assert response.status_code in (200, 201), response.text
        await wait_logged(pg_url, 30)
        await _wait_feedback(pg_url, 40)

        proposal = await retrain(running.container)
        assert (proposal.trigger, proposal.status, proposal.model_version, proposal.base_version) == (
            "manual", "open", "3", "1")
        assert proposal.data["feedback_rows"] == 20 and proposal.data["base_rows"] == 2000
        assert proposal.data["weights"] == {"base": 1.0, "feedback": 2.0}
        assert proposal.data["feedback_levels"] == dict(collections.Counter(truth[TARGET][:20]))
        assert _aliases(settings) == {"production": "1", "challenger": "3"}
        run = _mlflow(settings).get_run(proposal.run_id)
        assert run.data.tags["retrain.trigger"] == "manual"
        assert run.data.tags["retrain.proposal"] == str(proposal.id)
        assert run.data.tags["retrain.window_start"] == proposal.window_start.isoformat()
        assert run.data.tags["retrain.window_end"] == proposal.window_end.isoformat()
        assert proposal.window_end - proposal.window_start == timedelta(days=90)
        assert run.data.params["weighted_rows"] == "20"

        listed = (await client.get(PROPOSALS)).json()["proposals"]
        assert [(p["id"], p["status"], p["model_version"]) for p in listed] == [
            (str(proposal.id), "open", "3")]
        missing = await client.get(f"{PROPOSALS}/{uuid.uuid4()}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "proposal_not_found"
        bad = await client.post(f"{PROPOSALS}/{proposal.id}/approve", headers=admin(),
                                json={"reason": "secret-x1\tz", "extra": 1})
        assert bad.status_code == 422 and "secret-x1" not in bad.text, bad.text
        assert (await client.post(f"{PROPOSALS}/{proposal.id}/approve")).status_code == 401

        approved = await client.post(f"{PROPOSALS}/{proposal.id}/approve", headers=admin(),
                                     json={"reason": "beats v1"})
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert (body["proposal"]["status"], body["proposal"]["decided_by"]) == ("approved", "alice")
        assert (body["move"]["from_version"], body["move"]["to_version"]) == ("1", "3")
        assert body["move"]["decision"]["promote"] is True
        assert _aliases(settings) == {"production": "3"}  # the challenger alias left it
        again = await client.post(f"{PROPOSALS}/{proposal.id}/approve", headers=admin())
        assert again.status_code == 409 and again.json()["error"]["code"] == "proposal_decided"

        second = await retrain(running.container)
        assert (second.model_version, second.base_version) == ("4", "3")
        rejected = await client.post(f"{PROPOSALS}/{second.id}/reject", headers=admin(),
                                     json={"reason": "not now"})
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"
        assert _aliases(settings) == {"production": "3"}
        assert (await client.post(f"{PROPOSALS}/{second.id}/reject", headers=admin())).status_code == 409
        only_open = (await client.get(PROPOSALS, params={"status": "open"})).json()["proposals"]
        assert only_open == []

        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["actor"], a["action"], a["from_version"], a["to_version"], a["outcome"])
                for a in audit] == [
            ("alice", "challenger-cleared", "4", None, "success"),
            ("alice", "reject-proposal", "3", "4", "success"),
            ("training", "challenger", None, "4", "success"),
            ("alice", "challenger-cleared", "3", None, "success"),
            ("alice", "promote", "1", "3", "success"),
            ("training", "challenger", None, "3", "success"),
        ]
        assert audit[1]["reason"] == f"retraining proposal {second.id}: not now"
        assert audit[4]["reason"] == f"retraining proposal {proposal.id}: beats v1"


async def test_approval_the_policy_refuses_is_409_with_its_reason_and_the_proposal_stays_open(
        lifecycle_dir, tmp_path):
    url = sqlite_url(tmp_path)
    settings = lifecycle_settings(lifecycle_dir, database_url=url,
                                  lifecycle=LifecycleSettings(min_improvement=1.0))
    running = RunningApp(settings)
    async with running as client:
        with pytest.raises(NotEnoughFeedback, match="FS_RETRAIN_MIN_FEEDBACK_ROWS"):
            await retrain(running.container)
        await _seed(url, rows=10, with_feedback=5, seed=3)
        proposal = await retrain(running.container)

        refused = await client.post(f"{PROPOSALS}/{proposal.id}/approve", headers=admin())
        assert refused.status_code == 409, refused.text
        message = refused.json()["error"]["message"]
        assert message.startswith("promotion refused: f1_macro") and "needed > 0 and >= 1.0000" in message
        kept = (await client.get(f"{PROPOSALS}/{proposal.id}")).json()
        assert kept["status"] == "open" and kept["decided_at"] is None
        assert [(r["by"], r["reason"]) for r in kept["detail"]["refusals"]] == [("alice", message)]
        assert _aliases(settings) == {"production": "1", "challenger": proposal.model_version}
        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["action"], a["to_version"], a["outcome"]) for a in audit] == [
            ("promote", proposal.model_version, "refused"),
            ("challenger", proposal.model_version, "success")]
        assert audit[0]["detail"] in message


def _cli(data_dir: Path, *args: str, code: int = 0) -> str:
    """The command in-process on ``data_dir``'s embedded stores, with a small training set."""
    env = {"FS_DATA_DIR": str(data_dir), "FS_TRAIN_ROWS": "2000", "FS_TRAIN_N_ESTIMATORS": "10",
           "FS_TRAIN_REFERENCE_ROWS": "200"}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli_app, list(args), env=env)
    finally:
        root.handlers, root.level = handlers, level
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout if code == 0 else result.output


def test_cli_retrain_then_list_reject_and_refuse_a_second_decision(lifecycle_dir):
    assert "(FS_RETRAIN_MIN_FEEDBACK_ROWS)" in _cli(lifecycle_dir, "retrain", code=2)
    url = f"sqlite+aiosqlite:///{lifecycle_dir / 'predictions.db'}"
    asyncio.run(upgrade(url))
    asyncio.run(_seed(url, rows=12, with_feedback=8, seed=4))

    proposal = json.loads(_cli(lifecycle_dir, "retrain", "--json"))
    assert (proposal["status"], proposal["trigger"]) == ("open", "manual")
    assert proposal["data"]["feedback_rows"] == 8
    listed = json.loads(_cli(lifecycle_dir, "proposals", "list", "--json"))
    assert [p["id"] for p in listed] == [proposal["id"]]
    assert f"proposal {proposal['id']} rejected" in _cli(lifecycle_dir, "proposals", "reject",
                                                         proposal["id"], "--reason", "cli test")
    assert "already rejected" in _cli(lifecycle_dir, "proposals", "approve", proposal["id"], code=2)
    assert "must be a proposal id" in _cli(lifecycle_dir, "proposals", "approve", "nope", code=2)
    table = _cli(lifecycle_dir, "proposals", "list")
    assert proposal["id"] in table and "rejected" in table


async def test_the_drift_trigger_files_one_proposal_per_drift_episode(lifecycle_dir, tmp_path):
    url = sqlite_url(tmp_path)
    settings = lifecycle_settings(
        lifecycle_dir, database_url=url, retrain=RetrainSettings(on_drift=True),
        drift=DriftSettings(check_enabled=False, importance_rows=0))
    await upgrade(url)
    await _seed(url, rows=300, with_feedback=10, seed=5,
                shift=("trend_score", "internal_usage", "scarcity_index", "hiring_difficulty",
                       "training_requests", "avg_salary_k", "economic_indicator", "horizon_years",
                       "job_role", "skill"))
    running = RunningApp(settings)
    async with running:
        monitor = running.container.drift_monitor
        first = datetime(2026, 11, 30, 10, tzinfo=UTC)
        slots = [first, first + timedelta(seconds=settings.drift.check_interval_s)]
        for slot in slots:
            await monitor.run_slot(slot)
        proposals = await running.container.proposals.list(MODEL)
        report_ids = [(await monitor._claims.get(CHECK_JOB, slot)).report_id for slot in slots]
        for report_id in report_ids:  # both checks saw drift: one episode
            assert (await running.container.drift.stored(report_id))["dataset_drift"] is True
        report_id = report_ids[0]
    assert [(p.trigger, p.status, p.detail) for p in proposals] == [
        ("drift", "open", {"drift_report_id": report_id})]
