"""Feedback round-trips (also while the prediction is still spooled); subject ids stay hashed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, text

from app.config import PrivacySettings, SpoolSettings
from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings


async def _predict(client, n: int = 1, **extra) -> list[str]:
    response = await client.post("/v1/predictions", json={"items": valid_items(n), **extra})
    assert response.status_code == 200, response.text
    return [p["prediction_id"] for p in response.json()["predictions"]]


async def test_feedback_round_trip_latest_wins_history_kept(registry_dir, tmp_path, db_url):
    settings = make_settings(registry_dir, database_url=db_url,
                             spool=SpoolSettings(dir=tmp_path / "spool", drain_interval_s=0.05))
    app = RunningApp(settings)
    async with app as client:
        [pid] = await _predict(client)
        first = await client.post(f"/v1/predictions/{pid}/feedback", json={"actual_level": "HIGH"})
        assert first.status_code == 200, first.text
        assert first.json()["actual_level"] == "HIGH"
        again = await client.post(f"/v1/predictions/{pid}/feedback", json={"actual_level": "LOW"})
        assert again.status_code == 200
        shown = (await client.get(f"/v1/predictions/{pid}")).json()
        assert shown["feedback"]["actual_level"] == "LOW"
        assert shown["feedback"]["submissions"] == 2

        unknown = await client.post(f"/v1/predictions/{uuid.uuid4()}/feedback",
                                    json={"actual_level": "LOW"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "prediction_not_found"
        bad = await client.post(f"/v1/predictions/{pid}/feedback", json={"actual_level": "HUGE"})
        assert bad.status_code == 422 and "HUGE" not in bad.text
        assert (await client.post(f"/v1/predictions/{pid}/feedback", json={})).status_code == 422

        # Read back from the database (SQLite stores no zone): timestamps still say UTC.
        while app.container.prediction_log.pending_count:
            await asyncio.sleep(0.05)
        stored = (await client.get(f"/v1/predictions/{pid}")).json()
        for stamp in (stored["created_at"], stored["feedback"]["created_at"]):
            assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            levels = (await conn.execute(
                select(PredictionFeedback.actual_level)
                .where(PredictionFeedback.prediction_id == uuid.UUID(pid))
            )).scalars().all()
    finally:
        await engine.dispose()
    assert sorted(levels) == ["HIGH", "LOW"]


async def test_feedback_for_a_prediction_still_in_the_spool(registry_dir, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    # Batches of 10,000 or a minute: the prediction stays in the spool for the whole test.
    spool = SpoolSettings(dir=tmp_path / "spool", drain_interval_s=60, drain_batch_size=10_000)
    app = RunningApp(make_settings(registry_dir, database_url=url, spool=spool))
    async with app as client:
        [pid] = await _predict(client)
        assert app.container.prediction_log.pending(uuid.UUID(pid)) is not None
        engine = create_engine(url)
        async with engine.connect() as conn:
            assert (await conn.execute(select(Prediction.id))).first() is None  # not in the table yet
        await engine.dispose()
        response = await client.post(f"/v1/predictions/{pid}/feedback", json={"actual_level": "MEDIUM"})
        assert response.status_code == 200
        shown = (await client.get(f"/v1/predictions/{pid}")).json()
        assert shown["level"] in ("LOW", "MEDIUM", "HIGH")
        assert shown["feedback"]["actual_level"] == "MEDIUM"


async def test_raw_subject_ids_never_stored_logged_or_exported(registry_dir, tmp_path, pg_url, caplog):
    raw = "EMP-7f3a-SECRET-subject-4711"
    key = "test-hmac-key-for-privacy"
    expected = hmac.new(key.encode(), raw.encode(), hashlib.sha256).hexdigest()
    spool_dir = tmp_path / "spool"
    settings = make_settings(
        registry_dir, database_url=pg_url, log_level="DEBUG",
        privacy=PrivacySettings(subject_hmac_key=key),
        spool=SpoolSettings(dir=spool_dir, durability="fsync", drain_interval_s=60,
                            drain_batch_size=10_000),
    )
    caplog.set_level(logging.DEBUG)
    app = RunningApp(settings)
    async with app as client:
        ids = await _predict(client, 3, subject_id=raw)
        spooled = b"".join(p.read_bytes() for p in spool_dir.glob("*.jsonl"))
        assert expected.encode() in spooled and raw.encode() not in spooled
        shown = await client.get(f"/v1/predictions/{ids[0]}")
        metrics = (await client.get("/metrics")).text
        await asyncio.sleep(0)
    assert raw not in shown.text and raw not in metrics
    assert raw not in caplog.text
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            dump = (await conn.execute(text("SELECT p::text FROM prediction p"))).scalars().all()
    finally:
        await engine.dispose()
    assert len(dump) == 3
    assert all(expected in row and raw not in row for row in dump)
    leftovers = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(raw.encode() in data for data in leftovers)


async def test_time_range_queries_use_the_created_at_index(pg_url):
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join((await conn.execute(text(
                "EXPLAIN SELECT id FROM prediction WHERE created_at >= now() - interval '1 day' "
                "AND created_at < now()"
            ))).scalars().all())
    finally:
        await engine.dispose()
    assert "ix_prediction_created_at" in plan, plan
