"""Micro-batching and the lean predict path, with the real trained model from the test registry."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest

from app.config import BatchSettings
from app.metrics import ServiceMetrics
from app.ml.features import BY_NAME, FEATURE_NAMES
from app.ml.pipeline import build_pipeline
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry
from app.serving.batching import MicroBatcher
from app.serving.loaded_model import LoadedModel, load_from_path, to_frame
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings


@pytest.fixture(scope="module")
def model_path(registry_dir: Path) -> Path:
    settings = make_settings(registry_dir)
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    return registry.download(registry.resolve(settings.model.name, "production"))


@pytest.fixture(scope="module")
def model(registry_dir: Path, model_path: Path) -> LoadedModel:
    settings = make_settings(registry_dir)
    registry = ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                             artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)
    return load_from_path(registry.resolve(settings.model.name, "production"), model_path)


def varied_rows(n: int, seed: int) -> list[dict]:
    """Realistic rows, with unseen categories and values at the schema bounds mixed in."""
    rng = random.Random(seed)
    rows = generate(n, seed=seed, with_label=False).to_dict("records")
    for i, row in enumerate(rows):
        if i % 7 == 0:
            row["skill"] = f"Unseen skill {i}"
        if i % 11 == 0:
            row["job_role"], row["department"] = "Chief Vibes Officer", "Nowhere"
        if i % 13 == 0:
            row["horizon_years"], row["trend_score"] = rng.choice([1, 10]), rng.choice([0.0, 1.0])
        if i % 17 == 0:
            row["training_requests"] = BY_NAME["training_requests"].maximum
    return rows


def test_lean_path_is_identical_to_pyfunc_and_pipeline(model: LoadedModel, model_path: Path):
    assert model.predictor == "lean", model.predictor_note  # load_from_path's default: nothing compiled
    rows = varied_rows(300, seed=11)
    frame = to_frame(rows)
    proba = model.predict_rows(rows)
    expected = model._in_level_order(model.fitted().predict_proba(frame))  # sklearn's own, LEVELS order
    assert np.array_equal(proba, expected)
    assert np.array_equal(model.predict_proba(frame), expected)
    pyfunc_labels = mlflow.pyfunc.load_model(str(model_path)).predict(frame[list(FEATURE_NAMES)])
    assert model.levels_of(proba) == list(pyfunc_labels)
    # Single rows too (the hot case for batching-off single-row traffic).
    for row in rows[:20]:
        single = model._in_level_order(model.fitted().predict_proba(to_frame([row])))
        assert np.array_equal(model.predict_rows([row]), single)


@pytest.fixture
async def batcher():
    made = []

    async def make(max_rows=256, max_wait_s=0.002) -> MicroBatcher:
        b = MicroBatcher(max_rows=max_rows, max_wait_s=max_wait_s, metrics=ServiceMetrics(), history=10_000)
        await b.start()
        made.append(b)
        return b

    yield make
    for b in made:
        await b.stop()


async def test_each_caller_gets_its_own_rows(model: LoadedModel, batcher):
    b = await batcher(max_rows=64)
    rng = random.Random(3)
    requests = [varied_rows(rng.randint(1, 9), seed=100 + i) for i in range(60)]

    async def call(rows):
        await asyncio.sleep(rng.random() * 0.02)
        return await b.submit(model, rows)

    results = await asyncio.gather(*(call(rows) for rows in requests))
    for rows, proba in zip(requests, results, strict=True):
        assert np.array_equal(proba, model.predict_rows(rows))
    assert max(r.requests for r in b.history) > 1, "concurrent requests should share batches"
    assert max(r.rows for r in b.history) <= 64
    assert sum(r.rows for r in b.history) == sum(len(rows) for rows in requests)


async def test_a_batch_holds_one_model_version(model: LoadedModel, batcher):
    # A really different model, as after a hot swap: its rows must never be predicted by the other.
    data = generate(600, seed=9)
    other_pipeline = build_pipeline("logistic_regression").fit(
        data[list(FEATURE_NAMES)], data["future_need_level"]
    )
    other = LoadedModel(ref=model.ref, pipeline=other_pipeline, signature=None, reference=None)
    other.enable_lean_path()
    b = await batcher()
    requests = [((model, other)[i % 2], varied_rows(3, seed=200 + i)) for i in range(30)]
    results = await asyncio.gather(*(b.submit(m, rows) for m, rows in requests))
    for (m, rows), proba in zip(requests, results, strict=True):
        assert np.array_equal(proba, m.predict_rows(rows))
    assert not np.array_equal(model.predict_rows(requests[1][1]), other.predict_rows(requests[1][1]))


async def test_waits_for_company_are_bounded(model: LoadedModel, batcher):
    bound = 0.02
    b = await batcher(max_wait_s=bound)
    rng = random.Random(5)

    async def client(i):
        for _ in range(6):
            await asyncio.sleep(rng.random() * 0.03)  # staggered arrivals: company trickles in
            await b.submit(model, varied_rows(1 + i % 3, seed=i))

    await asyncio.gather(*(client(i) for i in range(8)))
    waits = [w for r in b.history for w in r.company_waits]
    assert any(r.waited for r in b.history), "under concurrency the batcher should wait for company"
    # The consumer stops collecting at oldest arrival + bound; the slack is event-loop scheduling
    # on a busy 2-core machine (a batch predicting in a thread holds the GIL for a few ms).
    assert max(waits) <= bound + 0.03, max(waits)


async def test_a_lone_client_is_not_delayed(model: LoadedModel, batcher):
    b = await batcher(max_wait_s=5.0)  # a wait would be obvious: 5 s per request
    for i in range(15):
        proba = await b.submit(model, varied_rows(1, seed=i))
        assert proba.shape == (1, 3)
    assert len(b.history) == 15
    assert all(r.requests == 1 and not r.waited for r in b.history)


async def test_a_failing_request_fails_alone(model: LoadedModel, batcher):
    b = await batcher()
    good = [varied_rows(2, seed=300 + i) for i in range(5)]
    bad = varied_rows(1, seed=399)
    bad[0]["trend_score"] = "not a number"  # what validation would have refused
    # Submitted in one go: the consumer takes them all into one batch, which then fails.
    futures = [b.submit(model, rows) for rows in good[:3]] + [b.submit(model, bad)]
    futures += [b.submit(model, rows) for rows in good[3:]]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[3], ValueError)
    for rows, proba in zip(good, results[:3] + results[4:], strict=True):
        assert np.array_equal(proba, model.predict_rows(rows))
    assert [r.requests for r in b.history] == [6]  # one batch, re-predicted one by one
    assert b.metrics.batch_fallbacks._value.get() == 1


async def test_stop_fails_what_is_still_queued(model: LoadedModel):
    from app.errors import ModelNotReady

    b = MicroBatcher(max_rows=256, max_wait_s=0.002, metrics=ServiceMetrics())
    await b.start()
    futures = [b.submit(model, varied_rows(1, seed=i)) for i in range(3)]
    await b.stop()  # before the consumer ever ran: nothing may be left hanging
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, ModelNotReady) for r in results), results


async def test_api_predictions_identical_with_batching_on_and_off(registry_dir, tmp_path):
    requests = [valid_items(1 + i % 5, seed=500 + i) for i in range(24)]
    requests[3][0]["skill"] = "Underwater Basket Weaving"

    async def run(enabled: bool):
        settings = make_settings(
            registry_dir, database_url=f"sqlite+aiosqlite:///{tmp_path / f'p{enabled}.db'}",
            batch=BatchSettings(enabled=enabled, max_wait_ms=5),
        )
        async with RunningApp(settings) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/predictions", json={"items": items}) for items in requests)
            )
            metrics = (await client.get("/metrics")).text
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        return [
            [(p["level"], p["score"], p["probabilities"]) for p in r.json()["predictions"]]
            for r in responses
        ], metrics

    batched, metrics_on = await run(True)
    alone, metrics_off = await run(False)
    assert batched == alone
    assert [len(r) for r in batched] == [len(items) for items in requests]
    assert "fs_batch_rows_count" in metrics_on
    assert "fs_batch_rows_count 0.0" in metrics_off
