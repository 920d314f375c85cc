"""No configured secret and no raw subject id ever appears in a response, a log line, a metric
or the prediction log, whatever the client sends (including errors)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from tests.support.databases import pg_database
from tests.support.factories import valid_items
from tests.support.live_server import LiveServer

HMAC_KEY = "hmac-key-" + uuid.uuid4().hex
API_KEY = "api-key-" + uuid.uuid4().hex
DB_PASSWORD = "dbpw" + uuid.uuid4().hex  # trust auth accepts it; it must still never leak
SUBJECTS = [f"employee-{uuid.uuid4().hex[:10]}" for _ in range(5)]
TRACE_ID = f"trace-{uuid.uuid4().hex[:12]}"


def _exercise(base: str) -> list[str]:
    """Every kind of request, good and bad; returns every response body and header seen."""
    seen: list[str] = []
    good = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=base, timeout=10) as client:
        calls = [
            ("POST", "/v1/predictions",
             {"json": {"items": valid_items(2), "subject_id": SUBJECTS[0]}, "headers": good}),
            ("POST", "/v1/predictions",
             {"json": {"items": valid_items(1), "subject_id": SUBJECTS[1]},
              "headers": good | {"X-Request-ID": TRACE_ID}}),
            ("POST", "/v1/predictions", {"json": {"items": valid_items(1), "subject_id": SUBJECTS[2]}}),
            ("POST", "/v1/predictions",
             {"json": {"items": valid_items(1), "subject_id": SUBJECTS[3]},
              "headers": {"X-API-Key": API_KEY[:-1]}}),
            ("POST", "/v1/predictions",
             {"json": {"items": [{"trend_score": SUBJECTS[4]}], "subject_id": SUBJECTS[4]}, "headers": good}),
            ("POST", "/v1/predictions",
             {"content": b"{" + SUBJECTS[4].encode(),
              "headers": good | {"content-type": "application/json"}}),
            ("GET", "/health/ready", {}),
            ("GET", "/health/live", {}),
            ("GET", "/openapi.json", {}),
            ("GET", "/metrics", {}),
        ]
        for method, path, kwargs in calls:
            response = client.request(method, path, **kwargs)
            assert response.status_code < 500, (path, response.text)
            seen.append(response.text)
            seen.append(str(response.headers))
            if path == "/v1/predictions" and response.status_code == 200:
                for p in response.json()["predictions"]:
                    logged = client.get(f"/v1/predictions/{p['prediction_id']}", headers=good)
                    seen.append(logged.text)
    return seen


async def test_secrets_and_subject_ids_never_leak(registry_dir):
    async with pg_database() as url:
        url_with_password = url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
        server = LiveServer(
            registry_dir, url_with_password,
            FS_SUBJECT_HMAC_KEY=HMAC_KEY, FS_API_KEYS=API_KEY, FS_LOG_LEVEL="DEBUG", FS_ACCESS_LOG="true",
        ).start()
        try:
            bodies = await asyncio.to_thread(_exercise, server.base_url)
        finally:
            code = server.stop()
        assert code == 0, server.output

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = await conn.fetch("SELECT row_to_json(p)::text AS doc FROM prediction p")
            hashes = {r["subject_hash"] for r in await conn.fetch("SELECT subject_hash FROM prediction")}
        finally:
            await conn.close()

    assert len(rows) == 3  # two items + one item with a valid key
    assert len([h for h in hashes if h]) == 2
    haystacks = {"responses": "\n".join(bodies), "logs": server.output,
                 "database": "\n".join(r["doc"] for r in rows)}
    assert "uvicorn" in server.output  # the logs were captured at all
    # The caller's request id is in the log lines of its request, and stored with the prediction.
    assert any(TRACE_ID in line and "/v1/predictions" in line for line in server.output.splitlines())
    assert TRACE_ID in haystacks["database"]
    for where, text in haystacks.items():
        for secret in (HMAC_KEY, API_KEY, DB_PASSWORD, *SUBJECTS):
            assert secret not in text, f"{secret[:6]}... found in {where}"
