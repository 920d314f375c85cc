"""Every kind of bad input gets a clear 4xx naming the field, never echoing values, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.support.factories import valid_items

SECRET_LOOKING = "s3cr3t-value-7781"


def _item(**changes):
    item = valid_items(1)[0]
    for key, value in changes.items():
        if value is ...:
            item.pop(key)
        else:
            item[key] = value
    return item


CASES = [
    # (description, body, expected status, fields named)
    ("missing feature", {"items": [_item(trend_score=...)]}, 422, ["items.0.trend_score"]),
    ("wrong type", {"items": [_item(horizon_years=SECRET_LOOKING)]}, 422, ["items.0.horizon_years"]),
    ("string for float", {"items": [_item(trend_score="0.5")]}, 422, ["items.0.trend_score"]),
    ("number for category", {"items": [_item(skill=7)]}, 422, ["items.0.skill"]),
    ("out of range", {"items": [_item(trend_score=1.5)]}, 422, ["items.0.trend_score"]),
    ("negative count", {"items": [_item(training_requests=-1)]}, 422, ["items.0.training_requests"]),
    ("horizon too long", {"items": [_item(horizon_years=11)]}, 422, ["items.0.horizon_years"]),
    ("zero salary", {"items": [_item(avg_salary_k=0)]}, 422, ["items.0.avg_salary_k"]),
    ("empty list", {"items": []}, 422, ["items"]),
    ("unknown field", {"items": [_item() | {SECRET_LOOKING: 1}]}, 422, [f"items.0.{SECRET_LOOKING}"]),
    ("unknown top-level field", {"items": [_item()], "extra": SECRET_LOOKING}, 422, ["extra"]),
    ("no items key", {}, 422, ["items"]),
    ("too many items", {"items": valid_items(101)}, 422, ["items"]),
    ("empty category", {"items": [_item(job_role="")]}, 422, ["items.0.job_role"]),
    ("overlong category", {"items": [_item(job_role="x" * 500)]}, 422, ["items.0.job_role"]),
]


@pytest.mark.parametrize("description,body,status,fields", CASES, ids=[c[0] for c in CASES])
async def test_bad_json_bodies(client, description, body, status, fields):
    response = await client.post("/v1/predictions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    named = {d["field"] for d in error.get("details", [])}
    for field in fields:
        assert field in named or field in error["message"], (field, error)
    assert SECRET_LOOKING not in response.text.replace(f"items.0.{SECRET_LOOKING}", "")
    assert "x" * 50 not in response.text
    assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_nan_and_infinite_numbers_are_rejected(client, token):
    item = json.dumps(_item(trend_score=0.123456789)).replace("0.123456789", token)
    raw = f'{{"items": [{item}]}}'.encode()
    response = await client.post("/v1/predictions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"items.0.trend_score"}


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"items": [', b"\xff\xfe"])
async def test_invalid_json_is_400(client, raw):
    response = await client.post("/v1/predictions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_json", "validation_error")


async def test_invalid_json_gets_400_with_code(client):
    response = await client.post(
        "/v1/predictions", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid_json", "message": "the request body is not valid JSON"}
    }


async def test_list_body_and_bad_id(client):
    assert (await client.post("/v1/predictions", json=[1, 2])).status_code == 422
    response = await client.get("/v1/predictions/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "path.prediction_id"
