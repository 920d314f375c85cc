"""Label-free monitoring through the API: the estimate, per-group views, confidence drift."""

from __future__ import annotations

from collections import Counter

from app.config import DriftSettings
from app.ml.features import FEATURE_NAMES, LEVELS, ROLE_DEPARTMENTS
from app.ml.synthetic import generate
from tests.support.monitoring import insert_feedback, now, wait_logged
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

ROWS = 600


async def test_estimates_groups_and_confidence_drift_without_feedback(settings, pg_url):
    settings = make_settings(settings.data_dir, database_url=pg_url,
                             drift=DriftSettings(check_enabled=False))
    frame = generate(ROWS, seed=61)
    items = frame[list(FEATURE_NAMES)].to_dict("records")
    async with RunningApp(settings) as client:
        made = []
        for first in range(0, ROWS, 100):
            response = await client.post("/v1/predictions", json={"items": items[first:first + 100]})
            assert response.status_code == 200, response.text
            made += response.json()["predictions"]
        await wait_logged(pg_url, ROWS)

        body = (await client.get("/v1/performance", params={"last": "1d", "bucket": "1d"})).json()
        assert body["overall"] is None  # no feedback at all
        estimated = body["estimated"]
        assert estimated["rows"] == ROWS
        low, high = estimated["accuracy_interval"]
        assert 0.4 < low <= estimated["accuracy"] <= high < 1.0
        confusion = estimated["expected_confusion"]
        assert sum(sum(row.values()) for row in confusion.values()) == ROWS  # rounded to 3 places
        assert sum(b["estimated"]["rows"] for b in body["buckets"] if b["estimated"]) == ROWS
        # The estimate's truth: labels the service never saw.
        truth = frame["future_need_level"].tolist()
        right = sum(p["level"] == t for p, t in zip(made, truth, strict=True)) / ROWS
        assert abs(estimated["accuracy"] - right) < 0.1

        # Feedback for the first 200: realized figures appear beside the estimate.
        at = now()
        await insert_feedback(pg_url, [(p["prediction_id"], t, at) for p, t in
                                       zip(made[:200], truth[:200], strict=True)])
        groups = (await client.get("/v1/performance/groups", params={"by": "department",
                                                                      "last": "1d"})).json()
        departments = Counter(frame["department"])
        assert {g["group"] for g in groups["groups"]} == set(ROLE_DEPARTMENTS.values())
        assert {g["group"]: g["predictions"] for g in groups["groups"]} == dict(departments)
        assert groups["predictions"] == ROWS and sum(g["feedback"] for g in groups["groups"]) == 200
        high_rate = sum(p["level"] == "HIGH" for p in made) / ROWS
        assert abs(groups["high_rate"] - high_rate) < 1e-6
        for g in groups["groups"]:
            assert abs(sum(g["level_share"].values()) - 1) < 1e-5
            assert abs(g["high_rate_ratio"] - g["level_share"]["HIGH"] / high_rate) < 1e-4
            assert g["estimated"]["rows"] == g["predictions"]
        by_role = (await client.get("/v1/performance/groups", params={"by": "job_role"})).json()
        assert sum(g["predictions"] for g in by_role["groups"]) == ROWS
        refused = await client.get("/v1/performance/groups", params={"by": "salary"})
        assert refused.status_code == 422 and "salary" not in refused.text

        metrics = (await client.get("/metrics")).text
        assert 'fs_group_predictions{by="department"' in metrics
        assert 'by="job_role"' not in metrics  # not in FS_MONITORING_GROUP_GAUGES
        assert "fs_model_estimated_accuracy " in metrics

        drift = (await client.get("/v1/drift", params={"last": "1d"})).json()
        confidence = drift["confidence_drift"]
        assert confidence["reference_source"] == "holdout"
        assert confidence["current_rows"] == ROWS and not confidence["drifted"]
        assert set(LEVELS) == set(confusion)
        importance = drift["importance_drift"]
        assert importance["reference_source"] == "holdout" and importance["current_rows"] == 200
        assert {f["feature"] for f in importance["features"]} == set(FEATURE_NAMES)


async def test_model_health_judges_the_estimate_when_feedback_is_sparse(settings, tmp_path):
    settings = make_settings(settings.data_dir, drift=DriftSettings(check_enabled=False))
    items = generate(300, seed=62)[list(FEATURE_NAMES)].to_dict("records")
    async with RunningApp(settings) as client:
        for first in range(0, 300, 100):
            assert (await client.post("/v1/predictions",
                                      json={"items": items[first:first + 100]})).status_code == 200
        await wait_logged(settings.db_url, 300)
        health = (await client.get(f"/v1/models/{settings.model.name}/health")).json()
        accuracy = next(c for c in health["checks"] if c["check"] == "accuracy")
        assert accuracy["source"] == "estimated" and accuracy["rows"] == 300, accuracy
        assert accuracy["status"] in ("ok", "degraded") and accuracy["feedback"] == 0
        assert accuracy["interval_low"] <= accuracy["value"] <= accuracy["interval_high"]
