"""The explanation routes through the real app: the document, the chart, inline explanations and
their limit, unknown ids; and the version that made a prediction explained after a promotion,
its stored document still returned once that version is gone from the registry."""

from __future__ import annotations

import asyncio
import time
import uuid

from mlflow import MlflowClient

from app.config import ExplanationSettings
from app.ml.features import FEATURE_NAMES, LEVELS
from tests.support.databases import sqlite_url
from tests.support.factories import valid_items
from tests.support.lifecycle import MODEL, lifecycle_settings
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings


def _additive(doc: dict) -> None:
    for level in LEVELS:
        total = doc["base_values"][level] + sum(c["contributions"][level] for c in doc["contributions"])
        assert abs(total - doc["probabilities"][level]) <= 1e-6


def _matches_logged(doc: dict, probabilities: dict) -> None:
    """Equal within 1e-6, or (the compiled float32 path answered) both kept and said so."""
    gap = max(abs(doc["probabilities"][lv] - probabilities[lv]) for lv in LEVELS)
    assert gap <= 1e-5
    if gap > 1e-6:
        assert doc["logged_probabilities"] == probabilities and "float32" in doc["note"]
    else:
        assert "logged_probabilities" not in doc


async def test_explanation_document_chart_and_unknown_ids(client) -> None:
    predicted = (await client.post("/v1/predictions", json={"items": valid_items(2)})).json()
    first = predicted["predictions"][0]
    response = await client.get(f"/v1/predictions/{first['prediction_id']}/explanation")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model"]["version"] == predicted["model"]["version"]
    assert doc["method"] == "tree_path_dependent" and doc["level"] == first["level"]
    assert [c["feature"] for c in doc["contributions"]] == list(FEATURE_NAMES)
    assert doc["top_factors"] and doc["summary"].startswith(f"{first['level']} (p=")
    _additive(doc)
    _matches_logged(doc, first["probabilities"])
    # Stored: the second read is the same document.
    assert (await client.get(f"/v1/predictions/{first['prediction_id']}/explanation")).json() == doc

    chart = await client.get(f"/v1/predictions/{first['prediction_id']}/explanation.svg")
    assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml")
    assert chart.text.startswith("<svg") and "base value" in chart.text and chart.text.endswith("</svg>")

    unknown = uuid.uuid4()
    for path in (f"/v1/predictions/{unknown}/explanation", f"/v1/predictions/{unknown}/explanation.svg"):
        missing = await client.get(path)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "prediction_not_found"


async def test_inline_explanations_are_stored_and_limited(client) -> None:
    items = valid_items(11, seed=11)
    response = await client.post("/v1/predictions", json={"items": items[:3], "explain": True})
    assert response.status_code == 200, response.text
    for prediction in response.json()["predictions"]:
        inline = prediction["explanation"]
        assert inline["prediction_id"] == prediction["prediction_id"]
        _additive(inline)
        _matches_logged(inline, prediction["probabilities"])
        stored = await client.get(f"/v1/predictions/{prediction['prediction_id']}/explanation")
        assert stored.json() == inline
    plain = await client.post("/v1/predictions", json={"items": items[:1]})
    assert "explanation" not in plain.json()["predictions"][0]

    too_many = await client.post("/v1/predictions", json={"items": items, "explain": True})
    assert too_many.status_code == 422
    error = too_many.json()["error"]
    assert error["code"] == "invalid_input" and "at most 10" in error["message"]
    assert "FS_EXPLAIN_MAX_ITEMS" in error["message"] and items[0]["job_role"] not in too_many.text
    # Without explain the usual limit applies: the same 11 items are fine.
    assert (await client.post("/v1/predictions", json={"items": items})).status_code == 200


async def _serving(client, version: str) -> None:
    deadline = time.monotonic() + 30
    while (await client.get("/health/ready")).json()["model"]["version"] != version:
        assert time.monotonic() < deadline, f"version {version} never served"
        await asyncio.sleep(0.1)


async def test_explained_by_the_version_that_predicted_even_once_it_is_gone(lifecycle_dir) -> None:
    settings = lifecycle_settings(lifecycle_dir)
    async with RunningApp(settings) as client:
        made = (await client.post("/v1/predictions", json={"items": valid_items(2)})).json()
        assert made["model"]["version"] == "1"
        MlflowClient(settings.tracking_uri, settings.registry_uri).set_registered_model_alias(
            MODEL, "production", "2")
        await _serving(client, "2")
        explained, unexplained = (p["prediction_id"] for p in made["predictions"])
        doc = (await client.get(f"/v1/predictions/{explained}/explanation")).json()
        assert doc["model"]["version"] == "1"  # loaded on demand: version 2 serves
        _additive(doc)
        _matches_logged(doc, made["predictions"][0]["probabilities"])
    MlflowClient(settings.tracking_uri, settings.registry_uri).delete_model_version(MODEL, "1")
    async with RunningApp(settings) as client:  # a new worker: no engine of version 1 in memory
        assert (await client.get(f"/v1/predictions/{explained}/explanation")).json() == doc
        gone = await client.get(f"/v1/predictions/{unexplained}/explanation")
        assert gone.status_code == 409
        assert gone.json()["error"]["code"] == "explanation_unavailable"


async def test_serving_builds_the_engine_in_the_background(registry_dir, tmp_path) -> None:
    settings = make_settings(registry_dir, database_url=sqlite_url(tmp_path),
                             explain=ExplanationSettings(warm_up=True))
    running = RunningApp(settings)
    async with running:
        deadline = time.monotonic() + 30
        while not running.container.explanations.engines:
            assert time.monotonic() < deadline, "the serving version's engine was never built"
            await asyncio.sleep(0.1)
        model = running.container.slot.current
        assert running.container.explanations.engines == [(model.name, model.version)]
