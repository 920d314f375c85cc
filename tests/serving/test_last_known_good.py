"""Last known good: with the registry unreachable at start, the cached serving version is served."""

from __future__ import annotations

import asyncio
import socket

from mlflow import MlflowClient

from tests.support.factories import valid_items
from tests.support.lifecycle import (
    MODEL,
    admin,
    lifecycle_settings,
)
from tests.support.running_app import RunningApp


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


async def test_unreachable_registry_at_start_serves_the_cached_version(lifecycle_dir, monkeypatch):
    settings = lifecycle_settings(lifecycle_dir, poll=60)
    mlflow = MlflowClient(settings.tracking_uri, settings.registry_uri)
    async with RunningApp(settings) as client:
        # Serve 1, then 2, then 1 again: the newest cached files are version 2's, but 1 is what
        # was served last, so 1 is the last known good.
        for version in ("2", "1"):
            mlflow.set_registered_model_alias(MODEL, "production", version)
            reload = (await client.post(f"/v1/models/{MODEL}/reload", headers=admin())).json()
            assert reload["outcome"] == "reloaded" and reload["serving"] == version
        ready = (await client.get("/health/ready")).json()
        assert ready["registry"] == {"reachable": True, "last_error": None}
        assert "warning" not in ready

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    offline = lifecycle_settings(lifecycle_dir, poll=60, mlflow_tracking_uri=unreachable)
    async with RunningApp(offline) as client:
        ready = (await client.get("/health/ready")).json()
        assert ready["status"] == "ready"
        assert ready["model"]["version"] == "1" and ready["model"]["semver"] == "1.0.0"
        assert ready["model"]["resolved_via"] == "cache"
        assert ready["registry"]["reachable"] is False
        assert "local cache" in ready["warning"]
        assert unreachable not in str(ready)  # no connection details in readiness
        answer = await client.post("/v1/predictions", json={"items": valid_items(2)})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"


async def test_unreachable_registry_and_empty_cache_is_not_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = lifecycle_settings(tmp_path, poll=60, mlflow_tracking_uri=f"http://127.0.0.1:{_closed_port()}")
    running = RunningApp(settings, wait=False)
    async with running as client:
        for _ in range(200):  # until the first poll has finished (bounded: 20 s)
            if running.container.reloader.polls:
                break
            await asyncio.sleep(0.1)
        assert running.container.reloader.status.reachable is False
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_ready"
