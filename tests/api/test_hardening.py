"""Limits, overload, deadlines, client keys, CORS, security headers, settings that refuse unsafe values."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr, ValidationError

from app.config import LimitsSettings, PrivacySettings, SecuritySettings, Settings
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp


async def test_oversized_body_gets_413_even_with_a_lying_content_length(settings):
    settings = settings.model_copy(update={"limits": LimitsSettings(max_body_bytes=4096)})
    async with RunningApp(settings) as client:
        big = {"items": valid_items(60)}  # ~20 KB of JSON
        response = await client.post("/v1/predictions", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        # A streamed body without Content-Length is counted as it arrives.
        async def chunks():
            for _ in range(10):
                yield b" " * 1000
        streamed = await client.post(
            "/v1/predictions", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert (await client.get("/health/ready")).status_code == 200
        small = await client.post("/v1/predictions", json={"items": valid_items(1)})
        assert small.status_code == 200


async def test_overload_gets_503_with_retry_after_and_health_still_answers(settings):
    settings = settings.model_copy(update={"limits": LimitsSettings(max_in_flight=1)})
    async with RunningApp(settings) as client:
        body = {"items": valid_items(100)}
        results = await asyncio.gather(
            *[client.post("/v1/predictions", json=body) for _ in range(12)],
            client.get("/health/live"), client.get("/health/ready"), client.get("/metrics"),
        )
        predictions, health = results[:12], results[12:]
        statuses = sorted(r.status_code for r in predictions)
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) == {200, 503}
        for r in predictions:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded"
        assert [r.status_code for r in health] == [200, 200, 200]
        metrics = (await client.get("/metrics")).text
        assert 'fs_requests_rejected_total{protocol="v1",reason="overload"}' in metrics


async def test_slow_prediction_gets_a_json_504(settings):
    # A deadline far below the real model's time for 100 rows.
    settings = settings.model_copy(update={"limits": LimitsSettings(deadline_s=1e-6)})
    running = RunningApp(settings)
    async with running as client:
        response = await client.post("/v1/predictions", json={"items": valid_items(100)})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        # The slot is given back when the thread finishes: the service recovers.
        await asyncio.sleep(0.5)
        assert (await client.get("/health/ready")).status_code == 200
        assert running.container.admission.in_flight == 0


async def test_client_api_keys_when_configured(settings):
    key = "k-" + "7" * 30
    settings = settings.model_copy(update={"security": SecuritySettings(api_keys=[SecretStr(key)])})
    async with RunningApp(settings) as client:
        body = {"items": valid_items(1)}
        missing = await client.post("/v1/predictions", json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "ApiKey"
        wrong = await client.post("/v1/predictions", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        assert "nope" not in wrong.text
        ok = await client.post("/v1/predictions", json=body, headers={"X-API-Key": key})
        assert ok.status_code == 200
        # The other protocols' prediction routes are guarded the same way, in their own shapes.
        records = {"dataframe_records": valid_items(1)}
        invocations = await client.post("/invocations", json=records)
        assert invocations.status_code == 401
        assert invocations.json()["error_code"] == "UNAUTHENTICATED"
        keyed = await client.post("/invocations", json=records, headers={"X-API-Key": key})
        assert keyed.status_code == 200
        v2 = await client.post("/v2/models/future-skills-model/infer", json={"inputs": []})
        assert v2.status_code == 401 and "error" in v2.json()
        assert (await client.get("/ping")).status_code == 200
        # Health and metrics never need a key.
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert key not in (await client.get("/metrics")).text


async def test_with_api_keys_every_data_route_needs_one_and_probes_stay_open(settings):
    key = "k-" + "8" * 30
    settings = settings.model_copy(update={"security": SecuritySettings(api_keys=[SecretStr(key)])})
    model = "future-skills-model"
    guarded = ["/v1/drift", "/v1/drift/report.html", "/v1/performance", f"/v1/models/{model}/health",
               f"/v1/models/{model}", f"/v1/models/{model}/versions", f"/v1/models/{model}/promotions"]
    probes = ["/health/live", "/health/ready", "/ping", "/health", "/version", "/metrics",
              "/v2/health/live", "/v2/health/ready", "/v2", f"/v2/models/{model}", "/docs"]
    async with RunningApp(settings) as client:
        for path in guarded:
            missing = await client.get(path)
            assert missing.status_code == 401, (path, missing.text)
            assert missing.json()["error"]["code"] == "unauthenticated"
            assert (await client.get(path, headers={"X-API-Key": "nope"})).status_code == 403, path
            assert (await client.get(path, headers={"X-API-Key": key})).status_code != 401, path
        for path in probes:
            assert (await client.get(path)).status_code == 200, path
        spec = (await client.get("/openapi.json")).json()
        assert {"APIKeyHeader": []} in spec["paths"]["/v1/performance"]["get"]["security"]
        assert "security" not in spec["paths"]["/health/ready"]["get"]
    async with RunningApp(settings.model_copy(update={"security": SecuritySettings()})) as client:
        spec = (await client.get("/openapi.json")).json()  # no keys: the document asks for none
        assert "security" not in spec["paths"]["/v1/performance"]["get"]
        assert "APIKeyHeader" not in spec.get("components", {}).get("securitySchemes", {})


async def test_cors_allows_only_listed_origins(settings):
    settings = settings.model_copy(
        update={"security": SecuritySettings(cors_origins=["https://hr.example.com"])}
    )
    async with RunningApp(settings) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/v1/predictions", headers={"Origin": "https://hr.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://hr.example.com"
        assert "access-control-allow-credentials" not in allowed.headers
        denied = await client.options(
            "/v1/predictions", headers={"Origin": "https://evil.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in denied.headers


def test_cors_wildcard_is_refused():
    with pytest.raises(ValidationError):
        SecuritySettings(cors_origins=["*"])


async def test_docs_can_be_switched_off(settings):
    settings = settings.model_copy(update={"security": SecuritySettings(docs_enabled=False)})
    async with RunningApp(settings) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404


async def test_security_headers_and_request_id(client):
    response = await client.post(
        "/v1/predictions", json={"items": valid_items(1)}, headers={"X-Request-ID": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    generated = await client.get("/health/live", headers={"X-Request-ID": "bad id <with> spaces"})
    assert generated.headers["x-request-id"] != "bad id <with> spaces"
    assert len(generated.headers["x-request-id"]) == 32


async def test_health_exposes_no_connection_details(client, settings):
    text = (await client.get("/health/ready")).text + (await client.get("/health/live")).text
    for secret in (settings.db_url, str(settings.data_dir), settings.tracking_uri, "sqlite", "127.0.0.1"):
        assert secret not in text


def test_production_refuses_placeholder_secrets(tmp_path):
    with pytest.raises(ValidationError, match="FS_SUBJECT_HMAC_KEY"):
        Settings(data_dir=tmp_path, environment="production")
    with pytest.raises(ValidationError, match="FS_API_KEYS"):
        Settings(
            data_dir=tmp_path, environment="production",
            privacy=PrivacySettings(subject_hmac_key=SecretStr("x" * 32)),
            security=SecuritySettings(api_keys=[SecretStr("short")]),
        )
    ok = Settings(
        data_dir=tmp_path, environment="production",
        privacy=PrivacySettings(subject_hmac_key=SecretStr("x" * 32)),
    )
    assert "x" * 32 not in repr(ok) and "x" * 32 not in str(ok.model_dump())
