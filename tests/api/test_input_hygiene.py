"""Strings a client controls that cannot be stored or would corrupt a log line: a 4xx naming the
field on every protocol, the value never echoed, never a 500; and 415 for a JSON route sent
something else."""

from __future__ import annotations

import asyncio
import io
import json
import struct

import pandas as pd
import pytest

from app.config import AdminSettings
from app.serving.codecs.hygiene import text_problem
from tests.support.dbcheck import stored_ids
from tests.support.factories import valid_items
from tests.support.lifecycle import ADMIN_TOKEN, admin
from tests.support.running_app import RunningApp

# Each is refused wherever a client string goes; the marker shows the value is never echoed.
MARK = "zq"
HOSTILE = {
    "nul": f"{MARK}\x00x",
    "newline": f"{MARK}\nx",
    "tab": f"{MARK}\tx",
    "escape": f"{MARK}\x1b[31m",
    "del": f"{MARK}\x7f",
    "c1": f"{MARK}\x9b",
    "lone surrogate": f"{MARK}\ud800x",
}
IDS = list(HOSTILE)


def _raw_json(payload) -> bytes:
    """JSON as a client writes it: a lone surrogate travels as the escape \\ud800."""
    return json.dumps(payload).encode()


def _item(**changes):
    return valid_items(1)[0] | changes


def _not_echoed(response) -> None:
    assert response.status_code < 500, response.text
    assert MARK not in response.text, response.text


def test_the_rule():
    assert text_problem("Data Engineer é \u2013 ok", 100) is None  # an en dash is printable text
    for value in HOSTILE.values():
        assert text_problem(value, 100)
    assert text_problem("x" * 101, 100) == "must be at most 100 characters"


@pytest.mark.parametrize("kind", IDS)
async def test_v1_features_and_subject_id(client, kind):
    value = HOSTILE[kind]
    for body, field in [
        ({"items": [_item(skill=value)]}, "items.0.skill"),
        ({"items": [_item()], "subject_id": value}, "subject_id"),
        ({"items": [_item() | {value: 1}]}, "items.0"),  # an unknown key is named only if clean
    ]:
        response = await client.post("/v1/predictions", content=_raw_json(body),
                                      headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        _not_echoed(response)
        assert any(d["field"].startswith(field) for d in response.json()["error"]["details"])


@pytest.mark.parametrize("kind", IDS)
async def test_invocations_json_csv_parquet(client, kind):
    value = HOSTILE[kind]
    row = _item(department=value)
    json_body = _raw_json({"dataframe_records": [row]})
    response = await client.post("/invocations", content=json_body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    _not_echoed(response)
    assert "department" in response.json()["message"]
    # A hostile column name is not repeated back either.
    keyed = _raw_json({"dataframe_records": [_item() | {value: None}]})
    keyed_answer = await client.post("/invocations", content=keyed,
                                     headers={"content-type": "application/json"})
    assert keyed_answer.status_code in (200, 400), keyed_answer.text
    _not_echoed(keyed_answer)
    if kind == "lone surrogate":
        return  # not encodable as UTF-8: cannot be in a CSV or Parquet body at all
    frame = pd.DataFrame([row])
    csv_answer = await client.post("/invocations", content=frame.to_csv(index=False).encode(),
                                   headers={"content-type": "text/csv"})
    assert csv_answer.status_code == 400, csv_answer.text
    _not_echoed(csv_answer)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    parquet = await client.post("/invocations", content=buffer.getvalue(),
                                headers={"content-type": "application/vnd.apache.parquet"})
    assert parquet.status_code == 400, parquet.text
    _not_echoed(parquet)
    assert "department" in parquet.json()["message"]


def _v2_inputs(row):
    return [
        {"name": k, "shape": [1, 1], "data": [v],
         "datatype": "BYTES" if isinstance(v, str) else "INT64" if isinstance(v, int) else "FP64"}
        for k, v in row.items()
    ]


@pytest.mark.parametrize("kind", IDS)
async def test_v2_json_binary_and_id(client, kind):
    value = HOSTILE[kind]
    url = "/v2/models/future-skills-model/infer"
    for body in ({"inputs": _v2_inputs(_item(job_role=value))},
                 {"id": value, "inputs": _v2_inputs(_item())}):
        response = await client.post(url, content=_raw_json(body))
        assert response.status_code == 400, response.text
        _not_echoed(response)
        assert "job_role" in response.text or "'id'" in response.text
    if kind == "lone surrogate":
        return  # binary BYTES are UTF-8: an encoded surrogate is malformed data (tested elsewhere)
    inputs = _v2_inputs(_item())
    raw = value.encode()
    element = struct.pack("<I", len(raw)) + raw
    target = next(t for t in inputs if t["name"] == "skill")
    del target["data"]
    target["parameters"] = {"binary_data_size": len(element)}
    header = json.dumps({"inputs": [target] + [t for t in inputs if t is not target]}).encode()
    binary = await client.post(url, content=header + element,
                               headers={"inference-header-content-length": str(len(header))})
    assert binary.status_code == 400, binary.text
    _not_echoed(binary)


@pytest.mark.parametrize("path", [
    "/v1/performance?version={}", "/v1/drift?last={}", "/v1/models/{}", "/v1/models/{}/versions",
    "/v1/models/{}/health", "/v2/models/{}", "/v2/models/future-skills-model/versions/{}/ready",
])
async def test_path_and_query_parameters(client, path):
    for raw in ("zq%00x", "zq%0Ax", "zq%7F", "zq" + "x" * 300):
        response = await client.get(path.format(raw))
        assert response.status_code in (400, 404, 422), (path, raw, response.text)
        _not_echoed(response)


async def test_admin_reason_is_one_printable_line(settings):
    settings = settings.model_copy(update={"admin": AdminSettings(admin_tokens={"alice": ADMIN_TOKEN})})
    async with RunningApp(settings) as client:
        for value in (HOSTILE["tab"], HOSTILE["newline"], HOSTILE["nul"], MARK + "x" * 500):
            for action, body in (("rollback", {}), ("promote", {"version": "1"})):
                response = await client.post(f"/v1/models/future-skills-model/{action}",
                                             json=body | {"reason": value}, headers=admin())
                assert response.status_code == 422, response.text
                assert response.json()["error"]["details"][0]["field"] == "reason"
                _not_echoed(response)


@pytest.mark.parametrize("request_id", ["zq\x01x", "zq" + "x" * 120, "zq x", "zq\tx"])
async def test_an_unusable_request_id_is_replaced(client, request_id):
    response = await client.post("/v1/predictions", json={"items": valid_items(1)},
                                 headers={"x-request-id": request_id})
    assert response.status_code == 200, response.text
    used = response.headers["x-request-id"]
    assert used != request_id and len(used) == 32
    stored = await client.get(f"/v1/predictions/{response.json()['predictions'][0]['prediction_id']}")
    assert stored.json()["request_id"] == used


@pytest.mark.parametrize("path,body", [
    ("/v1/predictions", {"items": [{"skill": "Python"}]}),
    ("/v1/models/future-skills-model/promote", {"version": "1"}),
])
async def test_a_json_route_sent_something_else_is_415(client, path, body):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = await client.post(path, content=json.dumps(body).encode(),
                                     headers=headers | admin())
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error"]["code"] == "unsupported_media_type"
    ok = await client.post("/v1/predictions", json={"items": valid_items(1)},
                           headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_hostile_strings_never_reach_the_database(settings, db_url):
    """On Postgres (which refuses U+0000) and SQLite: every protocol refuses them, and the next
    ordinary prediction is in the database within seconds."""
    settings = settings.model_copy(update={"database_url": db_url})
    async with RunningApp(settings) as client:
        for value in HOSTILE.values():
            answers = [
                await client.post("/v1/predictions", content=_raw_json({"items": [_item(skill=value)]}),
                                  headers={"content-type": "application/json"}),
                await client.post("/invocations", headers={"content-type": "application/json"},
                                  content=_raw_json({"dataframe_records": [_item(skill=value)]})),
                await client.post("/v2/models/future-skills-model/infer",
                                  content=_raw_json({"inputs": _v2_inputs(_item(skill=value))})),
            ]
            assert [a.status_code for a in answers] == [422, 400, 400], [a.text for a in answers]
        ok = await client.post("/v1/predictions", json={"items": valid_items(1)})
        assert ok.status_code == 200, ok.text
        prediction_id = ok.json()["predictions"][0]["prediction_id"]
        deadline = asyncio.get_running_loop().time() + 5
        while prediction_id not in (await stored_ids(db_url))[1]:
            assert asyncio.get_running_loop().time() < deadline, "not in the database after 5 s"
            await asyncio.sleep(0.1)
        assert (await stored_ids(db_url))[0] == 1
