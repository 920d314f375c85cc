"""The HR API end to end over HTTP (ASGI), with the real trained model and a real database."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys

import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import pytest

from app.ml.features import LEVELS
from app.registry.client import ModelRegistry
from app.serving.loaded_model import PredictorOptions
from app.serving.siblings import WORKER_COUNT_ENV
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

TOLERANCE = PredictorOptions().parity_tolerance


async def test_ready_names_the_serving_version(client):
    body = (await client.get("/health/ready")).json()
    assert body["status"] == "ready"
    assert body["model"]["name"] == "future-skills-model"
    assert body["model"]["version"] == "1"
    assert body["model"]["semver"] == "1.0.0"
    assert (await client.get("/health/live")).status_code == 200


async def test_predict_returns_level_score_probabilities_and_version(client):
    items = valid_items(3)
    response = await client.post("/v1/predictions", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {
        "name": "future-skills-model", "version": "1", "semver": "1.0.0", "alias": "production"
    }
    assert len(body["predictions"]) == 3
    ids = {p["prediction_id"] for p in body["predictions"]}
    assert len(ids) == 3
    for p in body["predictions"]:
        probs = p["probabilities"]
        assert set(probs) == set(LEVELS)
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
        assert p["level"] == max(probs, key=probs.get)
        assert math.isclose(p["score"], 100 * (0.5 * probs["MEDIUM"] + probs["HIGH"]), abs_tol=1e-9)
    assert response.headers["x-request-id"]


async def test_predictions_match_the_registered_model(client, settings, tmp_path):
    """The served labels are the registered model's own, and its probabilities within the parity
    tolerance of the pipeline's (exact on the lean path; float32 leaf sums on the compiled one)."""
    items = valid_items(20, seed=11)
    body = (await client.post("/v1/predictions", json={"items": items})).json()
    # Load the registered version independently, through MLflow's own loaders.
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=None, cache_dir=tmp_path)
    path = registry.download(registry.resolve(settings.model.name, "production"))
    frame = pd.DataFrame(items)
    labels = mlflow.pyfunc.load_model(str(path)).predict(frame)
    pipeline = mlflow.sklearn.load_model(str(path))
    expected = pipeline.predict_proba(frame)
    classes = list(pipeline.classes_)
    for label, row, p in zip(labels, expected, body["predictions"], strict=True):
        assert p["level"] == label
        for level in LEVELS:
            assert p["probabilities"][level] == pytest.approx(row[classes.index(level)], abs=TOLERANCE)


async def test_unknown_category_is_accepted_and_counted(client):
    item = valid_items(1)[0] | {"skill": "Quantum Basket Weaving"}
    response = await client.post("/v1/predictions", json={"items": [item]})
    assert response.status_code == 200, response.text
    metrics = (await client.get("/metrics")).text
    assert 'fs_unknown_categories_total{feature="skill"} 1.0' in metrics


async def test_get_logged_prediction_names_its_version(client):
    item = valid_items(1)[0]
    created = (
        await client.post("/v1/predictions", json={"items": [item]}, headers={"X-Request-ID": "req-42"})
    ).json()
    pid = created["predictions"][0]["prediction_id"]
    logged = await client.get(f"/v1/predictions/{pid}")
    assert logged.status_code == 200
    body = logged.json()
    assert body["prediction_id"] == pid
    assert body["model_version"] == "1"
    assert body["features"] == item
    assert body["request_id"] == "req-42"
    assert body["level"] == created["predictions"][0]["level"]

    missing = await client.get("/v1/predictions/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "prediction_not_found"


async def test_metrics_count_predictions_by_version_and_level(client):
    body = (await client.post("/v1/predictions", json={"items": valid_items(5)})).json()
    levels = [p["level"] for p in body["predictions"]]
    text = (await client.get("/metrics")).text
    for level in set(levels):
        line = (
            f'fs_predictions_total{{level="{level}",model_name="future-skills-model",'
            f'model_version="1",protocol="v1"}} {float(levels.count(level))}'
        )
        assert line in text
    assert 'fs_model_info{model_name="future-skills-model",model_version="1",semver="1.0.0"} 1.0' in text
    assert "fs_prediction_latency_seconds_bucket" in text
    assert 'http_requests_total{handler="/v1/predictions"' in text


async def test_not_ready_without_a_production_model(tmp_path):
    settings = make_settings(tmp_path)  # an empty registry
    async with RunningApp(settings, wait=False) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "model_not_ready"
        response = await client.post("/v1/predictions", json={"items": valid_items(1)})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_ready"
        assert response.headers["retry-after"]
        assert (await client.get("/health/live")).status_code == 200


async def test_openapi_page_documents_the_api(client):
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/predictions" in schema["paths"]
    item = schema["components"]["schemas"]["PredictionItem"]
    assert item["properties"]["trend_score"]["maximum"] == 1
    assert (await client.get("/docs")).status_code == 200


async def test_not_ready_until_every_worker_of_the_server_serves(settings, monkeypatch):
    """Started by `serve --workers 2` (the count it hands its workers): this worker's model alone
    is not ready, since the other worker would answer 503 until it has loaded one too."""
    monkeypatch.setenv(WORKER_COUNT_ENV, "2")
    running = RunningApp(settings, wait=False)
    async with running as client:
        slot = running.container.slot
        markers = slot.siblings.directory
        for _ in range(600):  # this worker's model is installed (and marked) in the background
            if slot.current is not None and slot.siblings.ready_count() == 1:
                break
            await asyncio.sleep(0.1)
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.json()["error"] == {"code": "model_not_ready",
                                         "message": "1 of 2 workers have loaded the model"}
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.post("/v1/predictions", json={"items": valid_items(1)})).status_code == 200
        sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:  # a live worker of the same server has loaded its model
            (markers / f"{sibling.pid}.ready").write_text(str(os.getppid()))
            assert (await client.get("/health/ready")).json()["status"] == "ready"
            assert (await client.get("/v2/health/ready")).status_code == 200
        finally:
            sibling.kill()
            sibling.wait()
        assert (await client.get("/health/ready")).status_code == 503  # it died: not ready again
    assert not (markers / f"{os.getpid()}.ready").exists()  # forgotten at shutdown
