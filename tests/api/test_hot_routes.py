"""The prediction routes' lean handlers (app/api/hot_routes.py) answer exactly as their FastAPI
routes: every request below gets the same status, content type and body (ids aside) from the
service with FS_HOT_ROUTES on as off, and the lean path really is the one taken."""

from __future__ import annotations

import json
import re

from pydantic import SecretStr

from app.api import hot_routes
from app.config import SecuritySettings, ServerSettings
from tests.serving.test_protocols import MODEL, v2_body
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp

KEY = "client-key-for-hot-route-tests"
JSON = "application/json"
ROWS = valid_items(3)
V1 = "/v1/predictions"
V2 = f"/v2/models/{MODEL}/infer"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


# (path, content type, body, API key); every answer, good or bad, must be the route's.
REQUESTS: list[tuple[str, str | None, bytes, str | None]] = [
    (V1, JSON, _json({"items": ROWS}), KEY),
    (V1, JSON, _json({"items": ROWS[:1], "subject_id": "employee-1"}), KEY),
    (V1, "application/vnd.api+json", _json({"items": ROWS[:1]}), KEY),
    (V1, JSON, _json({"items": ROWS}), None),  # key missing: 401
    (V1, JSON, _json({"items": ROWS}), "wrong"),  # key not valid: 403
    (V1, "text/plain", _json({"items": ROWS}), KEY),  # 415
    (V1, None, b"", KEY),  # no body: 422
    (V1, JSON, b'{"items": [', KEY),  # malformed: 400
    (V1, JSON, b'{"items": [{"trend_score": NaN}]}', KEY),  # orjson refuses, the stdlib parses
    (V1, JSON, _json({"items": [ROWS[0] | {"trend_score": 7}]}), KEY),  # out of range: 422
    # Where JSON parsers differ (the lean path parses with pydantic, the route with orjson or the
    # stdlib): a byte order mark, repeated keys, a lone surrogate, an integer beyond 64 bits.
    (V1, JSON, b"\xef\xbb\xbf" + _json({"items": ROWS[:1]}), KEY),
    (V1, JSON, _json({"items": ROWS[:1]})[:-1] + b', "items": ' + _json(ROWS[1:2]) + b"}", KEY),
    (V1, JSON, _json({"items": [ROWS[0] | {"skill": "x"}]}).replace(b'"x"', b'"\\ud800"'), KEY),
    (V1, JSON, _json({"items": [ROWS[0] | {"horizon_years": 10**30}]}), KEY),
    (V1, JSON, _json({"items": [ROWS[0] | {"horizon_years": 3.0}]}), KEY),
    (V1, JSON, _json({"items": valid_items(101)}), KEY),  # too many: 422 from the service
    ("/invocations", JSON, _json({"dataframe_records": ROWS}), KEY),
    ("/invocations", "text/csv", b"a,b\n1,2\n", KEY),  # columns missing: 400
    ("/invocations", "application/xml", b"<x/>", KEY),  # 415
    ("/invocations", JSON, _json({"dataframe_records": ROWS}), None),  # 401, MLflow's shape
    (V2, JSON, _json(v2_body(ROWS, "req-1")), KEY),
    (V2, JSON, b"{", KEY),  # 400, V2's shape
    (V2, JSON, _json(v2_body(ROWS)), "wrong"),  # 403, V2's shape
    ("/v2/models/unknown-model/infer", JSON, _json(v2_body(ROWS)), KEY),  # 404
    ("/v2/models/%01bad/infer", JSON, _json(v2_body(ROWS)), KEY),  # path parameter refused: 400
    (f"/v2/models/{MODEL}/versions/999/infer", JSON, _json(v2_body(ROWS)), KEY),  # not loaded: 404
]


async def _answers(settings, hot: bool) -> list[tuple[int, str, bytes]]:
    settings = settings.model_copy(update={
        "server": ServerSettings(hot_routes=hot),
        "security": SecuritySettings(api_keys=[SecretStr(KEY)]),
    })
    answers = []
    async with RunningApp(settings) as client:
        for path, content_type, body, key in REQUESTS:
            headers = {"X-Request-ID": "hot-route-test"}
            if content_type is not None:
                headers["Content-Type"] = content_type
            if key is not None:
                headers["X-API-Key"] = key
            response = await client.post(path, content=body, headers=headers)
            answers.append((response.status_code, response.headers.get("content-type", ""),
                            _UUID.sub(b"<uuid>", response.content)))
    return answers


async def test_lean_handlers_answer_as_their_routes(settings, monkeypatch):
    declined: list[str] = []
    real_call = hot_routes.HotRoutes.__call__

    async def counting(self, scope, receive, send):  # notes each request the lean path declined
        app = self.app

        async def fallback(scope, receive, send):
            if scope["method"] == "POST":
                declined.append(scope["path"])
            await app(scope, receive, send)

        self.app = fallback
        try:
            await real_call(self, scope, receive, send)
        finally:
            self.app = app

    monkeypatch.setattr(hot_routes.HotRoutes, "__call__", counting)
    lean = await _answers(settings, hot=True)
    framework = await _answers(settings, hot=False)
    for request, with_lean, without in zip(REQUESTS, lean, framework, strict=True):
        assert with_lean == without, request[:2]
    statuses = [status for status, _, _ in lean]
    assert statuses.count(200) == 8 and 500 not in statuses, statuses
    # The good requests and the service's own refusals were answered by the lean handlers;
    # what the routes refuse before predicting went to FastAPI (the /invocations and /v2
    # handlers answer their protocol errors themselves, as their route classes do).
    # (The byte order mark, the lone surrogate and the 100-bit integer are among them.)
    assert declined == [V1] * 10 + ["/v2/models/\x01bad/infer"], declined
