"""The stop switch: suspend refuses predictions on every protocol and every worker sharing the
database, survives a restart, is audited, shown by readiness and the gauge; resume restores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import AdminSettings, ModelSettings, Settings, SpoolSettings
from tests.serving.test_protocols import v2_body
from tests.support.factories import valid_items
from tests.support.lifecycle import ADMIN_TOKEN, CI_TOKEN, MODEL, admin
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

POLL = 0.5
REASON = "bias found in the 2026 Q4 audit; stopped pending review"


def _settings(registry_dir: Path, db_url: str, spool: Path) -> Settings:
    # Each app its own spool directory: two in-process apps share a pid (the segment owner name).
    return make_settings(
        registry_dir, database_url=db_url, model=ModelSettings(poll_interval_s=POLL),
        admin=AdminSettings(admin_tokens={"alice": ADMIN_TOKEN, "ci": CI_TOKEN}),
        spool=SpoolSettings(dir=spool, drain_interval_s=0.05),
    )


def _gauge(metrics_text: str) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "fs_model_suspended":
            for sample in family.samples:
                if sample.labels == {"model": MODEL}:
                    return sample.value
    return None


async def _predict_all(client, rows) -> tuple:
    v1 = await client.post("/v1/predictions", json={"items": rows})
    inv = await client.post("/invocations", json={"dataframe_records": rows})
    v2 = await client.post(f"/v2/models/{MODEL}/infer", json=v2_body(rows))
    return v1, inv, v2


async def _until_status(client, status: int, rows, timeout: float) -> tuple[float, int]:
    """Seconds until the worker answers ``status``, and the rows it served (200) meanwhile."""
    started, served = time.monotonic(), 0
    while True:
        response = await client.post("/v1/predictions", json={"items": rows})
        if response.status_code == status:
            return time.monotonic() - started, served + (len(rows) if status == 200 else 0)
        served += len(rows) if response.status_code == 200 else 0
        assert time.monotonic() - started < timeout, response.text
        await asyncio.sleep(0.02)


async def _prediction_rows(db_url: str) -> int:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text("SELECT count(*) FROM prediction"))).scalar_one())
    finally:
        await engine.dispose()


async def test_suspend_stops_every_protocol_and_worker_survives_restart_resume_restores(
    registry_dir, pg_url, tmp_path
):
    rows = valid_items(3, seed=11)
    served = 0
    first, second = (RunningApp(_settings(registry_dir, pg_url, tmp_path / n)) for n in ("a", "b"))
    async with first as a, second as b:
        for client in (a, b):
            assert [r.status_code for r in await _predict_all(client, rows)] == [200] * 3
            served += 3 * len(rows)

        response = await a.post(f"/v1/models/{MODEL}/suspend", headers=admin(),
                                json={"reason": REASON})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["suspended"], body["changed"], body["changed_by"]) == (True, True, "alice")
        # The worker that handled the POST: at once, on every protocol, in each one's error shape.
        v1, inv, v2 = await _predict_all(a, rows)
        assert v1.status_code == inv.status_code == v2.status_code == 503
        assert v1.json()["error"]["code"] == "suspended"
        assert REASON in v1.json()["error"]["message"]
        assert v1.json()["error"]["details"] == [
            {"field": "model", "type": "suspended", "message": REASON}]
        assert inv.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert REASON in inv.json()["message"] and "suspended" in inv.json()["message"]
        assert REASON in v2.json()["error"] and "suspended" in v2.json()["error"]
        # The other worker (same database, its own poller): within one poll interval.
        waited, before = await _until_status(b, 503, rows, timeout=POLL + 2.0)
        served += before  # answered (and logged) before this worker's next read of the switch
        print(f"second worker refused {waited:.2f} s after the suspend (poll interval {POLL} s)")
        assert waited <= POLL + 0.5
        assert [r.status_code for r in await _predict_all(b, rows)] == [503] * 3

        ready = await a.get("/health/ready")
        assert ready.status_code == 200  # the balancer keeps routing: callers see the reason
        assert ready.json()["suspended"]["reason"] == REASON
        assert ready.json()["suspended"]["by"] == "alice"
        assert (await b.get("/health/ready")).json()["suspended"]["reason"] == REASON
        assert _gauge((await a.get("/metrics")).text) == 1.0
        assert (await a.get(f"/v1/models/{MODEL}")).json()["suspended"]["reason"] == REASON

        again = await b.post(f"/v1/models/{MODEL}/suspend", headers=admin(CI_TOKEN),
                             json={"reason": "second opinion"})
        assert again.status_code == 200
        assert (again.json()["changed"], again.json()["reason"], again.json()["changed_by"]) == (
            False, REASON, "alice")  # idempotent: the original reason and actor are kept

        # A restart (a new container on the same database) reads the switch before it is ready.
        async with RunningApp(_settings(registry_dir, pg_url, tmp_path / "c")) as c:
            assert (await c.get("/health/ready")).json()["suspended"]["reason"] == REASON
            assert [r.status_code for r in await _predict_all(c, rows)] == [503] * 3
            assert _gauge((await c.get("/metrics")).text) == 1.0

        resumed = await b.post(f"/v1/models/{MODEL}/resume", headers=admin(CI_TOKEN),
                               json={"reason": "reviewed, fixed in v2"})
        assert resumed.status_code == 200 and resumed.json()["suspended"] is False
        assert [r.status_code for r in await _predict_all(b, rows)] == [200] * 3
        served += 3 * len(rows)
        served += (await _until_status(a, 200, rows, timeout=POLL + 2.0))[1]
        assert "suspended" not in (await a.get("/health/ready")).json()
        assert _gauge((await a.get("/metrics")).text) == 0.0

        audit = (await a.get(f"/v1/models/{MODEL}/promotions")).json()["promotions"]
        switched = [(p["action"], p["actor"], p["reason"], p["outcome"]) for p in reversed(audit)]
        assert switched == [
            ("suspend", "alice", REASON, "success"),
            ("suspend", "ci", "second opinion", "success"),
            ("resume", "ci", "reviewed, fixed in v2", "success"),
        ]
        assert "unchanged" in next(p["detail"] for p in audit if p["reason"] == "second opinion")
    # Nothing was predicted or logged while suspended (the apps drained on shutdown).
    assert await _prediction_rows(pg_url) == served


async def test_switch_needs_an_admin_a_reason_and_a_served_model(registry_dir, tmp_path):
    settings = _settings(registry_dir, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", tmp_path / "s")
    async with RunningApp(settings) as client:
        path = f"/v1/models/{MODEL}/suspend"
        assert (await client.post(path, json={"reason": REASON})).status_code == 401
        assert (await client.post(path, headers=admin("not-a-token-at-all"),
                                  json={"reason": REASON})).status_code == 403
        for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "a\nb"},
                     {"reason": "x" * 501}, {"reason": REASON, "force": True}):
            response = await client.post(path, headers=admin(), json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["code"] == "validation_error"
        unknown = await client.post("/v1/models/another-model/suspend", headers=admin(),
                                    json={"reason": REASON})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        # Resuming a model that runs changes nothing; no body is needed.
        resumed = await client.post(f"/v1/models/{MODEL}/resume", headers=admin())
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["suspended"], resumed.json()["changed"]) == (False, False)
        assert (await client.post("/v1/predictions", json={"items": valid_items(1)})).status_code == 200


async def test_an_unreadable_switch_at_start_up_fails_closed_until_it_is_read(tmp_path):
    from app.db.engine import create_engine
    from app.db.migrate import upgrade
    from app.errors import ModelNotReady
    from app.lifecycle.audit import PromotionAudit
    from app.lifecycle.suspension import StopSwitch
    from app.serving.model_slot import ModelSlot

    unreachable = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nothing")  # refused at once
    slot = ModelSlot(registry=None, settings=ModelSettings(), metrics=None)  # type: ignore[arg-type]
    switch = StopSwitch(engine=unreachable, audit=PromotionAudit(engine=unreachable), model_name=MODEL,
                        interval_s=POLL, slot=slot)
    try:
        await switch.refresh(startup=True)
    finally:
        await unreachable.dispose()
    assert slot.suspension is not None and not slot.suspension.confirmed
    assert isinstance(slot.suspension.error(MODEL), ModelNotReady)  # 503 model_not_ready, not served

    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    switch.engine = create_engine(url)
    try:
        await switch.refresh()  # the database answers: never suspended, so the worker may serve
    finally:
        await switch.engine.dispose()
    assert slot.suspension is None
