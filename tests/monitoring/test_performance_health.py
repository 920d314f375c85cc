"""Performance from feedback and model health, with feedback written straight into the table."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import timedelta

import asyncpg
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from app.config import DriftSettings, HealthSettings
from app.db.migrate import upgrade
from app.ml.features import LEVELS
from app.ml.synthetic import generate
from app.monitoring.performance import BucketScore, trend
from tests.support.monitoring import insert_feedback, insert_predictions, now, prediction_rows
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

SHIFTED = ["trend_score", "training_requests", "avg_salary_k"]


def labelled(n: int, accuracy: float, offset: int = 0) -> tuple[list[str], list[str]]:
    """Predicted and actual levels: exactly round(n * accuracy) right, all classes present."""
    predicted = [LEVELS[(i + offset) % 3] for i in range(n)]
    right = round(n * accuracy)
    actual = [p if i < right else LEVELS[(LEVELS.index(p) + 1 + i % 2) % 3]
              for i, p in enumerate(predicted)]
    return predicted, actual


async def seed_feedback(db_url: str, accuracies: list[float], per_bucket: int = 50,
                        days: int = 3, version: str = "1") -> list[tuple[list[str], list[str]]]:
    """One batch of predictions (with feedback) in each daily bucket of the last ``days`` days."""
    t0 = now()
    truth = []
    for b, accuracy in enumerate(accuracies):
        made_at = t0 - timedelta(days=days - b) + timedelta(hours=6)
        predicted, actual = labelled(per_bucket, accuracy, offset=b)
        rows = prediction_rows(generate(per_bucket, seed=40 + b), predicted, made_at, version)
        await insert_predictions(db_url, rows)
        latest = [(r["id"], a, made_at + timedelta(hours=2)) for r, a in zip(rows, actual, strict=True)]
        # Earlier feedback that says the opposite: the latest row per prediction must win.
        earlier = [(r["id"], LEVELS[(LEVELS.index(a) + 1) % 3], made_at + timedelta(hours=1))
                   for r, a in zip(rows, actual, strict=True)]
        await insert_feedback(db_url, earlier + latest)
        truth.append((predicted, actual))
    return truth


async def test_performance_buckets_and_trend(settings, db_url):
    settings = make_settings(settings.data_dir, database_url=db_url,
                             drift=DriftSettings(check_enabled=False))
    await upgrade(db_url)
    truth = await seed_feedback(db_url, [0.9, 0.8, 0.6])
    # Noise that must not count: another model's prediction, and feedback for no prediction.
    other = prediction_rows(generate(5, seed=3), ["HIGH"] * 5, now() - timedelta(hours=30),
                            model_name="other-model")
    await insert_predictions(db_url, other)
    await insert_feedback(db_url, [(r["id"], "LOW", now()) for r in other]
                          + [(uuid.uuid4(), "LOW", now())])
    async with RunningApp(settings) as client:
        response = await client.get("/v1/performance", params={"last": "3d", "bucket": "1d"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["buckets"]) == 3
        for bucket, (predicted, actual) in zip(body["buckets"], truth, strict=True):
            assert bucket["feedback"] == 50
            assert bucket["accuracy"] == pytest.approx(accuracy_score(actual, predicted))
            assert bucket["f1_macro"] == pytest.approx(f1_score(actual, predicted, average="macro"))
            recalls = recall_score(actual, predicted, labels=list(LEVELS), average=None)
            assert bucket["recall"] == pytest.approx(dict(zip(LEVELS, recalls, strict=True)))
        assert [b["accuracy"] for b in body["buckets"]] == pytest.approx([0.9, 0.8, 0.6])
        assert body["overall"]["feedback"] == 150
        assert body["overall"]["accuracy"] == pytest.approx(2.3 / 3)
        assert body["trend"]["direction"] == "declining"
        assert body["trend"]["change"] == pytest.approx(-0.3)
        metrics = (await client.get("/metrics")).text
        assert "fs_model_accuracy 0.6" in metrics

        hourly = (await client.get("/v1/performance", params={"last": "2d", "bucket": "6h"})).json()
        assert len(hourly["buckets"]) == 8
        assert sum(b["feedback"] for b in hourly["buckets"]) == 100

        # One bucket with feedback: no trend line, and no end points in the body (not null).
        lone = (await client.get("/v1/performance", params={"last": "1d", "bucket": "1d"})).json()
        assert lone["trend"] == {"direction": "insufficient_data", "change": None,
                                 "buckets_with_feedback": 1}

        for params in ({"bucket": "0d"}, {"last": "30d", "bucket": "1s"}, {"last": "soon"}):
            bad = await client.get("/v1/performance", params=params)
            assert bad.status_code == 422, (params, bad.text)


def test_trend_directions():
    def buckets(*accs):
        return [BucketScore("", "", 0 if a is None else 40, a) for a in accs]

    up = trend(buckets(0.6, 0.7, 0.8), 0.02)
    assert up.direction == "improving" and up.change == pytest.approx(0.2)
    assert trend(buckets(0.8, 0.81, 0.8), 0.02).direction == "stable"
    assert trend(buckets(0.9, None, 0.7), 0.02).change == pytest.approx(-0.2)
    lone = trend(buckets(None, 0.9, None), 0.02)
    assert lone.direction == "insufficient_data"
    # No line, no end points: the body leaves them out rather than saying null.
    assert lone.to_dict() == {"direction": "insufficient_data", "change": None,
                              "buckets_with_feedback": 1}


def health_settings(registry_dir, db_url, **health):
    fields = {"window": "3d", "bucket": "1d", "min_feedback": 20, "p95_latency_ms": 500.0,
              "max_log_backlog_s": 0.5} | health
    return make_settings(registry_dir, database_url=db_url, health=HealthSettings(**fields),
                         drift=DriftSettings(check_enabled=False, share_threshold=0.25))


@pytest.mark.postgres
async def test_health_reasons_accumulate_and_the_worst_status_wins(registry_dir, pg_url):
    await seed_feedback(pg_url, [0.8, 0.66, 0.5])  # overall 0.653 < 0.70, declining by 0.3
    shifted = generate(1500, seed=61, shift=SHIFTED)
    await insert_predictions(pg_url, prediction_rows(shifted, shifted["future_need_level"],
                                                     now() - timedelta(minutes=5), latency_ms=900.0))
    async with RunningApp(health_settings(registry_dir, pg_url)) as client:
        drift = (await client.get("/v1/drift", params={"last": "1h"})).json()
        assert drift["dataset_drift"] is True

        # Hold the prediction table so the log cannot write: its backlog ages.
        blocker = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE prediction IN EXCLUSIVE MODE")
            item = generate(1, seed=62, with_label=False).to_dict("records")
            assert (await client.post("/v1/predictions", json={"items": item})).status_code == 200
            await asyncio.sleep(1.0)
            health = await client.get("/v1/models/future-skills-model/health")
            await tx.rollback()
        finally:
            await blocker.close()
        assert health.status_code == 200, health.text
        body = health.json()
        checks = {c["check"]: c for c in body["checks"]}
        assert body["status"] == "degraded"
        assert body["model"]["version"] == "1"
        assert checks["accuracy"]["status"] == "degraded"
        assert checks["accuracy"]["value"] == pytest.approx((40 + 33 + 25) / 150)
        assert checks["accuracy_trend"]["status"] == "warning"
        assert checks["latency_p95"]["status"] == "warning" and checks["latency_p95"]["value"] == 900.0
        assert checks["drift"]["status"] == "warning" and checks["drift"]["report_id"] == drift["report_id"]
        assert checks["prediction_log_backlog"]["status"] == "warning"
        assert len(body["reasons"]) == 5  # every reason is kept, not only the worst

        # The lock is gone: the backlog clears and that warning goes; the rest stay.
        for _ in range(50):
            body = (await client.get("/v1/models/future-skills-model/health")).json()
            if {c["check"]: c for c in body["checks"]}["prediction_log_backlog"]["status"] == "ok":
                break
            await asyncio.sleep(0.1)
        assert body["status"] == "degraded" and len(body["reasons"]) == 4


async def test_health_warning_and_healthy(registry_dir, tmp_path):
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'predictions.db'}"
    await upgrade(db_url)
    await seed_feedback(db_url, [0.9, 0.9, 0.92])
    recent = generate(200, seed=63)
    await insert_predictions(db_url, prediction_rows(recent, recent["future_need_level"],
                                                     now() - timedelta(minutes=5), latency_ms=20.0))
    async with RunningApp(health_settings(registry_dir, db_url)) as client:
        body = (await client.get("/v1/models/future-skills-model/health")).json()
        assert body["status"] == "healthy" and body["reasons"] == []
        checks = {c["check"]: c for c in body["checks"]}
        assert checks["accuracy"]["status"] == "ok" and checks["accuracy_trend"]["status"] == "ok"
        assert checks["drift"]["status"] == "skipped"  # no drift report yet: not guessed
        assert set(checks["drift"]) == {"check", "status", "reason"}  # no figures, not nulls
        assert set(checks["latency_p95"]) == {"check", "status", "reason", "value", "threshold",
                                              "predictions"}
        missing = await client.get("/v1/models/another-model/health")
        assert missing.status_code == 404
    # A stricter latency threshold: one warning, nothing worse.
    async with RunningApp(health_settings(registry_dir, db_url, p95_latency_ms=10.0)) as client:
        body = (await client.get("/v1/models/future-skills-model/health")).json()
        assert body["status"] == "warning"
        assert len(body["reasons"]) == 1 and "p95" in body["reasons"][0]
        assert math.isclose({c["check"]: c for c in body["checks"]}["latency_p95"]["value"], 20.0)
