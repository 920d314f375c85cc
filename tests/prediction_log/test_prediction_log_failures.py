"""The database goes away under load: nothing fails, nothing is lost, a full spool says 503.

Each test uses the private cluster (tests/support/pgcluster.py), which it stops and starts.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from sqlalchemy import select

from app.config import SpoolSettings
from app.db.engine import create_engine
from app.db.tables import PredictionFeedback
from tests.support.dbcheck import assert_exactly_once
from tests.support.factories import valid_items
from tests.support.load import run_load
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exported")


async def _wait_drained(app: RunningApp, timeout: float = 30.0) -> None:
    log = app.container.prediction_log
    deadline = asyncio.get_running_loop().time() + timeout
    while log.pending_count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert log.pending_count == 0, "the spool did not drain after the database came back"


async def test_postgres_stopped_mid_load_loses_nothing(registry_dir, tmp_path, pg_cluster, cluster_db):
    spool = SpoolSettings(dir=tmp_path / "spool", durability="fsync", backoff_max_s=0.5,
                          drain_interval_s=0.1)
    app = RunningApp(make_settings(registry_dir, database_url=cluster_db, spool=spool))
    async with app as client:

        async def outage() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pg_cluster.stop, "fast")
            await asyncio.sleep(1.5)
            await asyncio.to_thread(pg_cluster.start)

        load, _ = await asyncio.gather(run_load(client, seconds=4.0), outage())
        await _wait_drained(app)
        metrics = (await client.get("/metrics")).text
    assert load.statuses == {200: load.requests} and load.transport_errors == 0, load.statuses
    assert load.requests > 50
    assert _metric(metrics, "fs_spool_flush_failures_total") > 0  # the outage was really seen
    assert _metric(metrics, "fs_spool_dropped_records_total") == 0
    assert _metric(metrics, "fs_spool_pending_records") == 0
    assert _metric(metrics, "fs_spool_dead_letters_on_disk") == 0  # an outage refuses nothing
    total = await assert_exactly_once(cluster_db, load.ids)
    assert total == len(load.ids)


async def test_full_spool_gives_503_then_recovers(registry_dir, tmp_path, pg_cluster, cluster_db):
    spool = SpoolSettings(dir=tmp_path / "spool", durability="os", max_bytes=8192,
                          backoff_initial_s=0.05, backoff_max_s=0.3, drain_interval_s=0.05)
    app = RunningApp(make_settings(registry_dir, database_url=cluster_db, spool=spool))
    ok: list[str] = []
    async with app as client:
        pg_cluster.stop("immediate")
        first_503 = None
        for _ in range(100):  # ~600 bytes a record: the 8 KiB spool fills within ~15 requests
            response = await client.post("/v1/predictions", json={"items": valid_items(1)})
            if response.status_code == 503:
                first_503 = response
                break
            assert response.status_code == 200
            ok.extend(p["prediction_id"] for p in response.json()["predictions"])
        assert first_503 is not None, "the spool never filled"
        assert first_503.headers["retry-after"].isdigit()
        assert first_503.json()["error"]["code"] == "prediction_log_full"
        metrics = (await client.get("/metrics")).text
        assert _metric(metrics, "fs_spool_bytes") > 0
        assert _metric(metrics, "fs_spool_pending_records") == len(ok)
        assert _metric(metrics, "fs_spool_oldest_record_age_seconds") > 0
        assert _metric(metrics, "fs_spool_dropped_records_total") == 0
        assert (await client.get("/health/live")).status_code == 200  # not a crash

        pg_cluster.start()
        await _wait_drained(app)
        response = await client.post("/v1/predictions", json={"items": valid_items(2)})
        assert response.status_code == 200
        ok.extend(p["prediction_id"] for p in response.json()["predictions"])
    assert await assert_exactly_once(cluster_db, ok) == len(ok)


async def test_fail_open_answers_and_counts_the_drop(registry_dir, tmp_path, pg_cluster, cluster_db):
    spool = SpoolSettings(dir=tmp_path / "spool", durability="none", max_bytes=4096, fail_open=True)
    app = RunningApp(make_settings(registry_dir, database_url=cluster_db, spool=spool))
    async with app as client:
        pg_cluster.stop("fast")
        statuses = [
            (await client.post("/v1/predictions", json={"items": valid_items(1)})).status_code
            for _ in range(20)
        ]
        metrics = (await client.get("/metrics")).text
        pg_cluster.start()
    assert statuses == [200] * 20
    assert _metric(metrics, "fs_spool_dropped_records_total") > 0


async def test_feedback_while_postgres_is_stopped_is_answered_and_lands(
    registry_dir, tmp_path, pg_cluster, cluster_db
):
    spool = SpoolSettings(dir=tmp_path / "spool", backoff_initial_s=0.05, backoff_max_s=0.3,
                          drain_interval_s=0.05, feedback_grace_s=0.5)
    app = RunningApp(make_settings(registry_dir, database_url=cluster_db, spool=spool))
    log = None
    async with app as client:
        log = app.container.prediction_log

        async def predict() -> str:
            response = await client.post("/v1/predictions", json={"items": valid_items(1)})
            assert response.status_code == 200, response.text
            return response.json()["predictions"][0]["prediction_id"]

        async def feedback(pid: str, level: str) -> int:
            path = f"/v1/predictions/{pid}/feedback"
            return (await client.post(path, json={"actual_level": level})).status_code

        stored = await predict()
        await _wait_drained(app)
        pg_cluster.stop("fast")
        spooled = await predict()
        never = str(uuid.uuid4())  # no one can tell it is unknown while the database is down
        assert [await feedback(stored, "HIGH"), await feedback(spooled, "MEDIUM"),
                await feedback(spooled, "LOW"), await feedback(never, "LOW")] == [200] * 4
        shown = (await client.get(f"/v1/predictions/{spooled}")).json()  # from the spool
        assert shown["feedback"]["actual_level"] == "LOW" and shown["feedback"]["submissions"] == 2
        await asyncio.to_thread(pg_cluster.start)
        await _wait_drained(app)
        after = (await client.get(f"/v1/predictions/{spooled}")).json()
        assert after["feedback"]["actual_level"] == "LOW" and after["feedback"]["submissions"] == 2
        assert (await feedback(str(uuid.uuid4()), "LOW")) == 404  # database up: unknown is 404
    engine = create_engine(cluster_db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(PredictionFeedback.prediction_id, PredictionFeedback.actual_level)
            )).all()
    finally:
        await engine.dispose()
    assert sorted((str(p), lvl) for p, lvl in rows) == sorted(
        [(stored, "HIGH"), (spooled, "MEDIUM"), (spooled, "LOW")]
    )
    [letter] = log.dead_letters.list()  # the one about a prediction that never existed
    assert letter.kind == "feedback" and letter.reason == "no prediction with this id"
    assert json.loads(letter.line)["prediction_id"] == never
