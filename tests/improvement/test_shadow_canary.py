"""Shadow scoring, the challenger comparison, canary traffic and the policy's live evidence, on
the two-version lifecycle registry (v1 Production, v2 the challenger), real Postgres, real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli.main import app as cli_app
from app.config import ChallengerSettings, LifecycleSettings
from app.db.engine import create_engine
from tests.support.factories import valid_items
from tests.support.lifecycle import MODEL, admin, lifecycle_settings
from tests.support.models import registry_for
from tests.support.running_app import RunningApp


async def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _predict(client: httpx.AsyncClient, items: list[dict], subject: str | None = None) -> dict:
    body: dict = {"items": items}
    if subject is not None:
        body["subject_id"] = subject
    response = await client.post("/v1/predictions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def _rows(url: str, sql: str) -> list:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_shadow_scoring_comparison_and_live_evidence(lifecycle_dir, pg_url):
    settings = lifecycle_settings(
        lifecycle_dir, database_url=pg_url,
        lifecycle=LifecycleSettings(min_shadow_feedback_rows=50, challenger_not_worse=True,
                                    challenger_tolerance=1.0))
    registry = registry_for(settings)
    registry.set_alias(MODEL, "challenger", "2")
    running = RunningApp(settings)
    async with running as client:
        container = running.container
        await _wait_for(lambda: container.slot.challenger is not None)
        assert container.slot.challenger.version == "2"

        # Before any shadow evidence the policy refuses v2 and says why.
        refused = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                    json={"version": "2", "reason": "try"})
        assert refused.status_code == 409, refused.text
        assert "0 shadow-scored rows with feedback" in refused.json()["error"]["message"]

        # 1,000 predictions in 100 concurrent-ish requests: all answered by Production.
        items = valid_items(1000, seed=3)
        answers = await asyncio.gather(*(_predict(client, items[i:i + 10])
                                         for i in range(0, 1000, 10)))
        assert {a["model"]["version"] for a in answers} == {"1"}
        assert {a["model"]["alias"] for a in answers} == {"production"}
        ids = [p["prediction_id"] for a in answers for p in a["predictions"]]
        await container.shadow.wait_idle(30)
        await container.prediction_log.drainer.drain(30)
        stored = await _rows(pg_url, "SELECT prediction_id, model_version, champion_version, level "
                                     "FROM shadow_prediction")
        assert len(stored) >= 990
        assert {(r[1], r[2]) for r in stored} == {("2", "1")}
        assert {str(r[0]) for r in stored} <= set(ids)

        # The comparison's agreement and confusion against an independent join.
        pairs = await _rows(pg_url, "SELECT p.level, s.level FROM shadow_prediction s "
                                    "JOIN prediction p ON p.id = s.prediction_id")
        response = await client.get(f"/v1/models/{MODEL}/challenger")
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["challenger_version"] == "2" and report["champion_versions"] == ["1"]
        assert report["rows_shadow_scored"] == len(stored) == report["rows_compared"]
        agreement = sum(a == b for a, b in pairs) / len(pairs)
        assert report["agreement_rate"] == pytest.approx(agreement, abs=1e-6)
        for mine in ("LOW", "MEDIUM", "HIGH"):
            for theirs in ("LOW", "MEDIUM", "HIGH"):
                assert report["confusion"][mine][theirs] == sum(
                    1 for a, b in pairs if (a, b) == (mine, theirs))
        assert report["champion"]["estimated"]["rows"] == len(pairs)
        assert report["challenger"]["latency"]["p50_ms"] > 0
        assert report["state"] == {"alias": "challenger", "version": "2", "loaded": True,
                                   "shadow": True, "canary_percent": 0.0}

        # Feedback on 60 shadowed rows: the realized figures and the policy's evidence.
        shadowed = [str(r[0]) for r in stored][:60]
        truth = dict(await _rows(pg_url, "SELECT CAST(s.prediction_id AS text), s.level "
                                         "FROM shadow_prediction s"))
        for prediction_id in shadowed:  # the challenger's answer as the truth: it is right on all
            r = await client.post(f"/v1/predictions/{prediction_id}/feedback",
                                  json={"actual_level": truth[prediction_id]})
            assert r.status_code == 200, r.text
        await container.prediction_log.drainer.drain(30)
        report = (await client.get(f"/v1/models/{MODEL}/challenger")).json()
        assert report["rows_with_feedback"] == 60
        assert report["challenger"]["feedback"]["accuracy"] == 1.0
        champion = dict(await _rows(pg_url, "SELECT CAST(id AS text), level FROM prediction"))
        champion_right = sum(champion[p] == truth[p] for p in shadowed)
        assert report["champion"]["feedback"]["accuracy"] == pytest.approx(champion_right / 60)

        # The console view reads the same comparison.
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:  # the CLI sets up logging; undone for the rest of the session
            cli = await asyncio.to_thread(  # its own event loop, in a thread
                CliRunner().invoke, cli_app, ["models", "challenger", "--json"],
                env={"FS_DATA_DIR": str(lifecycle_dir), "DATABASE_URL": pg_url})
        finally:
            root.handlers, root.level = handlers, level
        assert cli.exit_code == 0, cli.output
        assert json.loads(cli.stdout)["agreement_rate"] == report["agreement_rate"]

        promoted = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                     json={"version": "2", "reason": "earned it live"})
        assert promoted.status_code == 200, promoted.text
        checks = {c["name"]: c["passed"] for c in promoted.json()["decision"]["checks"]}
        assert checks["live_rows"] and checks["live_not_worse"]

        # The challenger is Production now: it is unloaded, nothing more is shadowed.
        await _wait_for(lambda: container.slot.challenger is None)
        before = len(await _rows(pg_url, "SELECT 1 FROM shadow_prediction"))
        await _predict(client, valid_items(5, seed=9))
        await container.shadow.wait_idle(10)
        assert len(await _rows(pg_url, "SELECT 1 FROM shadow_prediction")) == before


@pytest.mark.postgres
async def test_canary_share_is_sticky_per_subject_and_named(lifecycle_dir, pg_url):
    settings = lifecycle_settings(lifecycle_dir, database_url=pg_url,
                                  challenger=ChallengerSettings(canary_percent=20, shadow=False))
    running = RunningApp(settings)
    async with running as client:
        put = await client.put(f"/v1/models/{MODEL}/challenger", headers=admin(),
                               json={"version": "2", "reason": "canary trial"})
        assert put.json() == {"name": MODEL, "alias": "challenger", "challenger": "2",
                              "previous": None}, put.text
        production = await client.put(f"/v1/models/{MODEL}/challenger", headers=admin(),
                                      json={"version": "1"})
        assert production.status_code == 409, production.text
        await _wait_for(lambda: running.container.slot.challenger is not None)
        item = valid_items(1, seed=5)
        subjects = [f"employee-{uuid.uuid4()}" for _ in range(400)]
        first = [await _predict(client, item, s) for s in subjects]
        second = [await _predict(client, item, s) for s in subjects[:100]]
        versions = [a["model"]["version"] for a in first]
        share = versions.count("2") / len(versions)
        assert 0.12 <= share <= 0.28, share
        assert [a["model"]["version"] for a in second] == versions[:100]
        assert all(a["model"]["alias"] == ("challenger" if a["model"]["version"] == "2"
                                           else "production") for a in first)
        # The record names the version that answered.
        answered = first[versions.index("2")]["predictions"][0]["prediction_id"]
        logged = (await client.get(f"/v1/predictions/{answered}")).json()
        assert logged["model_version"] == "2"
        # Removing the alias ends the canary; both changes are audited.
        cleared = await client.request("DELETE", f"/v1/models/{MODEL}/challenger", headers=admin(),
                                       json={"reason": "trial over"})
        assert cleared.json()["previous"] == "2", cleared.text
        await _wait_for(lambda: running.container.slot.challenger is None)
        again = [await _predict(client, item, s) for s in subjects[:50]]
        assert {a["model"]["version"] for a in again} == {"1"}
        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["action"], a["outcome"], a["to_version"]) for a in audit[:3]] == [
            ("challenger-cleared", "success", None), ("challenger", "refused", "1"),
            ("challenger", "success", "2")]


async def test_a_full_shadow_queue_drops_and_counts_never_delays(lifecycle_dir):
    """SQLite this time; a queue of 5 rows cannot take a 10-row request: the caller is answered,
    the rows are counted as dropped, nothing is stored."""
    settings = lifecycle_settings(lifecycle_dir,
                                  challenger=ChallengerSettings(shadow_queue_rows=5))
    registry_for(settings).set_alias(MODEL, "challenger", "2")
    running = RunningApp(settings)
    async with running as client:
        await _wait_for(lambda: running.container.slot.challenger is not None)
        answer = await _predict(client, valid_items(10, seed=4))
        assert len(answer["predictions"]) == 10
        await _predict(client, valid_items(3, seed=5))  # fits: scored and stored
        await running.container.shadow.wait_idle(10)
        metrics = (await client.get("/metrics")).text
        assert 'fs_shadow_rows_total{outcome="queue_full"} 10.0' in metrics
        assert 'fs_shadow_rows_total{outcome="stored"} 3.0' in metrics
        assert len(await _rows(settings.db_url, "SELECT 1 FROM shadow_prediction")) == 3
