"""Promotion, rollback and hot reload through the admin API, with the real registry and models."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from datetime import datetime, timedelta

from mlflow import MlflowClient

from app.config import LifecycleSettings
from tests.support.factories import valid_items
from tests.support.lifecycle import (
    ADMIN_TOKEN,
    CI_TOKEN,
    MODEL,
    CapturedLogs,
    admin,
    lifecycle_settings,
)
from tests.support.running_app import RunningApp

LOAD_SECONDS_BEFORE, LOAD_SECONDS_AFTER, MAX_REQUESTS = 1.0, 1.5, 2000


async def _load(client, stop: asyncio.Event, seen: list, items: list[dict]) -> None:
    """One sequential client: single-row predictions until told to stop (bounded in count)."""
    i = 0
    while not stop.is_set() and i < MAX_REQUESTS:
        started = time.monotonic()
        response = await client.post("/v1/predictions", json={"items": [items[i % len(items)]]})
        version = response.json()["model"]["version"] if response.status_code == 200 else None
        seen.append((started, response.status_code, version))
        i += 1


def _switches(versions: list[str | None]) -> int:
    return sum(1 for a, b in itertools.pairwise(versions) if a != b)


async def test_promotion_under_load_switches_once_without_a_failed_request(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    items = valid_items(50, seed=5)
    async with RunningApp(settings) as client:
        assert (await client.get("/health/ready")).json()["model"]["version"] == "1"
        stop = asyncio.Event()
        streams: list[list] = [[], []]
        loaders = [asyncio.create_task(_load(client, stop, s, items)) for s in streams]
        await asyncio.sleep(LOAD_SECONDS_BEFORE)
        response = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                     json={"version": "2", "reason": "better forest"})
        promoted_at = time.monotonic()
        await asyncio.sleep(LOAD_SECONDS_AFTER)
        stop.set()
        await asyncio.gather(*loaders)

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["from_version"], body["to_version"]) == ("1", "2")
        assert body["decision"]["promote"] is True
        # This worker reloads before answering (unless its poller was quicker by a hair).
        assert body["reload"]["outcome"] in ("reloaded", "unchanged")
        assert body["reload"]["serving"] == "2"
        total = sum(len(s) for s in streams)
        print(f"hot reload under load: {total} requests, "
              f"{sum(v == '1' for s in streams for _, _, v in s)} on v1, "
              f"{sum(v == '2' for s in streams for _, _, v in s)} on v2, 0 failed")
        assert total > 20, total
        for stream in streams:
            assert [status for _, status, _ in stream if status != 200] == []
            versions = [v for _, _, v in stream]
            assert versions[0] == "1" and versions[-1] == "2"
            assert _switches(versions) == 1, versions
            # Requests in flight may finish on the old model; every one sent later gets the new one.
            assert all(v == "2" for started, _, v in stream if started > promoted_at)

        ready = (await client.get("/health/ready")).json()
        assert ready["model"]["version"] == "2" and ready["model"]["semver"] == "1.1.0"
        metrics = (await client.get("/metrics")).text
        assert 'fs_model_reloads_total{outcome="success"} 2.0' in metrics  # start + promotion
        assert 'fs_promotions_total{action="promote",outcome="success"} 1.0' in metrics
        info = 'fs_model_info{model_name="future-skills-model",model_version="2",semver="1.1.0"} 1.0'
        assert info in metrics
        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["actor"], a["action"], a["from_version"], a["to_version"], a["outcome"], a["reason"])
                for a in audit] == [("alice", "promote", "1", "2", "success", "better forest")]


async def test_alias_set_with_plain_mlflow_client_is_served_within_one_poll(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir, poll=1.0)
    running = RunningApp(settings)
    async with running as client:
        app_reloader = running.container.reloader
        assert (await client.get("/health/ready")).json()["model"]["version"] == "1"
        MlflowClient(settings.tracking_uri, settings.registry_uri).set_registered_model_alias(
            MODEL, "production", "2")
        # A poll may be under way with the old answer; the next full poll must bring version 2.
        polls_at_move = app_reloader.polls
        deadline = time.monotonic() + 30
        while app_reloader.polls < polls_at_move + 2:
            assert time.monotonic() < deadline, "the reloader stopped polling"
            await asyncio.sleep(0.05)
        ready = (await client.get("/health/ready")).json()
        assert ready["model"]["version"] == "2"
        prediction = await client.post("/v1/predictions", json={"items": valid_items(1)})
        assert prediction.json()["model"]["version"] == "2"


async def test_version_that_cannot_load_is_never_served(lifecycle_dir, tmp_path):
    # A long interval: the background poller polls once at start, so the API's reloads are the
    # only attempts and the counts below are exact.
    settings = lifecycle_settings(lifecycle_dir, poll=60)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    v1 = mlflow.get_model_version(MODEL, "1")
    # A version whose artifacts are gone: registered from a copy of v1's files, then deleted.
    source = tmp_path / "doomed-model"
    shutil.copytree(mlflow.get_model_version_download_uri(MODEL, "1").removeprefix("file://"), source)
    broken = str(mlflow.create_model_version(MODEL, source.as_uri(), run_id=v1.run_id).version)
    shutil.rmtree(source)

    async with RunningApp(settings) as client:
        refused = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                    json={"version": broken})
        assert refused.status_code == 409
        assert "does not load" in refused.json()["error"]["message"]

        forced = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(CI_TOKEN),
                                   json={"version": broken, "force": True, "reason": "hotfix"})
        assert forced.status_code == 200, forced.text
        assert forced.json()["reload"]["outcome"] == "failed"

        ready = (await client.get("/health/ready")).json()
        assert ready["model"]["version"] == "1"
        answer = await client.post("/v1/predictions", json={"items": valid_items(2)})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
        metrics = (await client.get("/metrics")).text
        assert 'fs_model_reloads_total{outcome="failed"} 1.0' in metrics  # not retried yet

        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        rows = [(a["actor"], a["action"], a["to_version"], a["outcome"]) for a in audit]
        assert rows == [
            ("reloader", "reload-failed", broken, "failed"),
            ("ci", "promote", broken, "success"),
            ("alice", "promote", broken, "refused"),
        ]
        assert audit[0]["from_version"] == "1" and audit[0]["detail"]

        # The operator's explicit reload retries it and fails again, still serving version 1.
        again = await client.post(f"/v1/models/{MODEL}/reload", headers=admin())
        assert again.json()["outcome"] == "failed" and again.json()["serving"] == "1"
        assert 'fs_model_reloads_total{outcome="failed"} 2.0' in (await client.get("/metrics")).text
        assert (await client.get("/health/ready")).json()["model"]["version"] == "1"


async def test_rollback_returns_to_the_previous_version_and_audits_both(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    async with RunningApp(settings) as client:
        nothing = await client.post(f"/v1/models/{MODEL}/rollback", headers=admin(), json={})
        assert nothing.status_code == 409
        assert nothing.json()["error"]["code"] == "promotion_refused"

        promoted = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                     json={"version": "2"})
        assert promoted.status_code == 200, promoted.text
        back = await client.post(f"/v1/models/{MODEL}/rollback", headers=admin(CI_TOKEN),
                                 json={"reason": "complaints"})
        assert back.status_code == 200, back.text
        assert (back.json()["from_version"], back.json()["to_version"]) == ("2", "1")
        assert (await client.get("/health/ready")).json()["model"]["version"] == "1"

        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["actor"], a["action"], a["from_version"], a["to_version"], a["outcome"])
                for a in audit] == [
            ("ci", "rollback", "2", "1", "success"),
            ("alice", "promote", "1", "2", "success"),
            ("alice", "rollback", "1", None, "refused"),
        ]
        assert all(datetime.fromisoformat(a["created_at"]).utcoffset() == timedelta(0) for a in audit)
        model = (await client.get(f"/v1/models/{MODEL}")).json()
        assert model["production"]["version"] == "1"
        assert model["serving"] == {"version": "1", "semver": "1.0.0", "resolved_via": "alias"}
        versions = (await client.get(f"/v1/models/{MODEL}/versions")).json()["versions"]
        assert [(v["version"], v["semver"], v["aliases"]) for v in versions] == [
            ("2", "1.1.0", []), ("1", "1.0.0", ["production"])]
        assert 0 < versions[0]["metrics"]["f1_macro"] <= 1 and versions[0]["run_id"]

        # Client mistakes are 4xx that name the problem.
        assert (await client.get("/v1/models/no-such-model/versions")).status_code == 404
        unknown = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(), json={"version": "99"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        bad = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(), json={"version": "two"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "version"
        assert "two" not in bad.text


async def test_rollback_walks_back_through_every_promotion(lifecycle_dir):
    """Rollback is an undo: 1 -> 2 -> 3, then back to 2, then 1, then nothing left to undo.

    Each forced promotion and rollback is served by the lifecycle service: no poll runs (the
    background poller polls once at start, then sleeps for a minute)."""
    settings = lifecycle_settings(lifecycle_dir, poll=60)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    v2 = mlflow.get_model_version(MODEL, "2")
    third = str(mlflow.create_model_version(MODEL, mlflow.get_model_version_download_uri(MODEL, "2"),
                                            run_id=v2.run_id).version)
    assert third == "3"

    async def production() -> str:
        return (await client.get(f"/v1/models/{MODEL}")).json()["production"]["version"]

    running = RunningApp(settings)
    async with running as client:
        reloader = running.container.reloader
        while reloader.polls < 1:  # the start poll
            await asyncio.sleep(0.05)
        for version in ("2", "3"):
            moved = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                      json={"version": version, "force": True})
            assert moved.status_code == 200, moved.text
            assert moved.json()["reload"] == {
                "outcome": "reloaded", "serving": version, "target": version, "detail": None}
        assert (await client.get(f"/v1/models/{MODEL}")).json()["previous_production"] == "2"
        for expected_from, expected_to in (("3", "2"), ("2", "1")):
            back = await client.post(f"/v1/models/{MODEL}/rollback", headers=admin(), json={})
            assert back.status_code == 200, back.text
            assert (back.json()["from_version"], back.json()["to_version"]) == (expected_from, expected_to)
            assert back.json()["reload"]["serving"] == expected_to
            assert await production() == expected_to
        assert reloader.polls == 1  # every move above was served without a poll
        exhausted = await client.post(f"/v1/models/{MODEL}/rollback", headers=admin(), json={})
        assert exhausted.status_code == 409 and await production() == "1"

        # A move made outside the API (plain MLflow client): rollback returns to what it replaced.
        mlflow.set_registered_model_alias(MODEL, "production", "3")
        back = await client.post(f"/v1/models/{MODEL}/rollback", headers=admin(), json={})
        assert (back.json()["from_version"], back.json()["to_version"]) == ("3", "1")

        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["action"], a["from_version"], a["to_version"], a["outcome"])
                for a in reversed(audit)] == [
            ("promote", "1", "2", "success"), ("promote", "2", "3", "success"),
            ("rollback", "3", "2", "success"), ("rollback", "2", "1", "success"),
            ("rollback", "1", None, "refused"), ("rollback", "3", "1", "success"),
        ]


async def test_concurrent_moves_keep_one_consistent_history(lifecycle_dir, db_url):
    """Promotions and rollbacks racing each other: each move starts where the previous ended
    (or is refused with 409), so the audit is one chain ending at the registry's alias."""
    settings = lifecycle_settings(lifecycle_dir, database_url=db_url)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    v2 = mlflow.get_model_version(MODEL, "2")
    mlflow.create_model_version(MODEL, mlflow.get_model_version_download_uri(MODEL, "2"),
                                run_id=v2.run_id)
    changed = 0
    async with RunningApp(settings) as client:
        for _ in range(4):
            responses = await asyncio.gather(
                client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                            json={"version": "2", "force": True}),
                client.post(f"/v1/models/{MODEL}/promote", headers=admin(CI_TOKEN),
                            json={"version": "3", "force": True}),
                client.post(f"/v1/models/{MODEL}/rollback", headers=admin(), json={}),
            )
            for response in responses:
                assert response.status_code in (200, 409), response.text
                if response.status_code == 409:
                    code = response.json()["error"]["code"]
                    assert code in ("promotion_refused", "production_changed"), response.text
                    changed += code == "production_changed"
        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
    moves = [(a["from_version"], a["to_version"]) for a in reversed(audit) if a["outcome"] == "success"]
    assert moves, audit
    assert all(before[1] == after[0] for before, after in itertools.pairwise(moves)), moves
    assert moves[0][0] == "1"
    assert str(mlflow.get_model_version_by_alias(MODEL, "production").version) == moves[-1][1]
    print(f"{len(moves)} moves, {changed} refused because Production changed meanwhile")


async def test_no_move_without_its_audit_row(lifecycle_dir, pg_cluster, cluster_db):
    """The audit store down: promote and rollback get 503 and the registry is left untouched."""
    settings = lifecycle_settings(lifecycle_dir, database_url=cluster_db)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    async with RunningApp(settings) as client:
        pg_cluster.stop()
        try:
            for path, body in (("promote", {"version": "2", "force": True}), ("rollback", {})):
                refused = await client.post(f"/v1/models/{MODEL}/{path}", headers=admin(), json=body)
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"]
                assert refused.json()["error"]["code"] == "database_unavailable"
            assert str(mlflow.get_model_version_by_alias(MODEL, "production").version) == "1"
            assert "fs.production_history" not in mlflow.get_registered_model(MODEL).tags
            assert (await client.get("/health/ready")).json()["model"]["version"] == "1"
            audit = await client.get(f"/v1/models/{MODEL}/promotions")
            assert audit.status_code == 503 and audit.json()["error"]["code"] == "database_unavailable"
        finally:
            pg_cluster.start()

        moved = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(),
                                  json={"version": "2", "force": True})
        assert moved.status_code == 200, moved.text
        assert str(mlflow.get_model_version_by_alias(MODEL, "production").version) == "2"
        audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        assert [(a["action"], a["from_version"], a["to_version"], a["outcome"]) for a in audit] == [
            ("promote", "1", "2", "success")]


async def test_admin_tokens_401_403_and_never_leaked(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    with CapturedLogs() as logs:
        async with RunningApp(settings) as client:
            url = f"/v1/models/{MODEL}/promote"
            body = {"version": "2"}
            missing = await client.post(url, json=body)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            assert missing.json()["error"]["code"] == "unauthenticated"
            basic = await client.post(url, json=body, headers={"Authorization": "Basic YTpi"})
            assert basic.status_code == 401
            wrong = await client.post(url, json=body, headers=admin(ADMIN_TOKEN + "x"))
            assert wrong.status_code == 403
            assert wrong.json()["error"]["code"] == "permission_denied"
            for path in ("rollback", "reload"):
                assert (await client.post(f"/v1/models/{MODEL}/{path}")).status_code == 401
                assert (await client.post(f"/v1/models/{MODEL}/{path}",
                                          headers=admin("nope-nope-nope"))).status_code == 403
            ok = await client.post(url, json=body, headers=admin())
            assert ok.status_code == 200
            texts = [missing.text, wrong.text, ok.text]
            for path in ("/health/ready", f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/promotions",
                         "/metrics", "/openapi.json"):
                texts.append((await client.get(path)).text)
            audit = (await client.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
            assert [a["actor"] for a in audit] == ["alice"]
    everything = "\n".join(texts + logs.lines + [str(a) for a in audit])
    assert logs.lines, "no log lines were captured"
    for token in (ADMIN_TOKEN, CI_TOKEN):
        assert token not in everything
    assert "alice-secret" not in everything


async def test_promotion_can_also_move_the_legacy_stage(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir, poll=60,
                                  lifecycle=LifecycleSettings(set_legacy_stage=True))
    async with RunningApp(settings) as client:
        response = await client.post(f"/v1/models/{MODEL}/promote", headers=admin(), json={"version": "2"})
        assert response.status_code == 200, response.text
        versions = (await client.get(f"/v1/models/{MODEL}/versions")).json()["versions"]
        assert [(v["version"], v["stage"], v["aliases"]) for v in versions] == [
            ("2", "Production", ["production"]), ("1", "None", [])]
