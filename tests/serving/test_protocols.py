"""/invocations and /v2 share the core: the prediction log, metrics, errors, docs and readiness."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import LimitsSettings
from app.ml.features import FEATURE_NAMES, FEATURES
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

MODEL = "future-skills-model"
V2_TYPES = {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}


def v2_body(rows: list[dict], request_id: str | None = None) -> dict:
    body = {
        "inputs": [
            {"name": f.name, "datatype": V2_TYPES[f.kind], "shape": [len(rows), 1],
             "data": [r[f.name] for r in rows]}
            for f in FEATURES
        ]
    }
    return body | ({"id": request_id} if request_id else {})


async def _logged(db_url: str) -> list[tuple[str, str | None, str]]:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT protocol, request_id, level FROM prediction"))
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()


def _predictions_by_protocol(metrics_text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "fs_predictions":
            for sample in family.samples:
                if sample.name == "fs_predictions_total":
                    protocol = sample.labels["protocol"]
                    counts[protocol] = counts.get(protocol, 0) + sample.value
    return counts


async def test_every_protocol_is_logged_and_counted_with_its_name(registry_dir, db_url):
    rows = valid_items(6, seed=21)
    settings = make_settings(registry_dir, database_url=db_url)
    async with RunningApp(settings) as client:
        mlflow_answer = await client.post(
            "/invocations", json={"dataframe_records": rows[:3]}, headers={"X-Request-ID": "inv-1"}
        )
        csv_answer = await client.post(
            "/invocations", content=pd.DataFrame(rows[3:4]).to_csv(index=False),
            headers={"Content-Type": "text/csv", "X-Request-ID": "inv-2"},
        )
        v2_answer = await client.post(
            f"/v2/models/{MODEL}/infer", json=v2_body(rows[4:6], "abc"), headers={"X-Request-ID": "v2-1"}
        )
        v1_answer = await client.post(
            "/v1/predictions", json={"items": rows}, headers={"X-Request-ID": "v1-1"}
        )
        assert [r.status_code for r in (mlflow_answer, csv_answer, v2_answer, v1_answer)] == [200] * 4
        counted = _predictions_by_protocol((await client.get("/metrics")).text)
    # Leaving the app drains the prediction log.
    logged = await _logged(db_url)

    assert counted == {"mlflow": 4, "v2": 2, "v1": 6}
    assert sorted((p, r) for p, r, _ in logged) == sorted(
        [("mlflow", "inv-1")] * 3 + [("mlflow", "inv-2")] + [("v2", "v2-1")] * 2 + [("v1", "v1-1")] * 6
    )
    v1_levels = [p["level"] for p in v1_answer.json()["predictions"]]
    assert mlflow_answer.json()["predictions"] + csv_answer.json()["predictions"] == v1_levels[:4]
    assert v2_answer.json()["outputs"][0]["data"] == v1_levels[4:]
    assert {level for p, _, level in logged if p == "v2"} <= {"LOW", "MEDIUM", "HIGH"}


async def test_protocol_specific_refusals(settings):
    """Deliberate differences from MLflow: the HR API's feature validation, a limit, JSON 504."""
    row = valid_items(1, seed=4)[0]
    async with RunningApp(settings) as client:
        cases = {
            "out of range": {"dataframe_records": [dict(row, trend_score=7.5)]},
            "null category": {"dataframe_records": [dict(row, job_role=None)]},
            "null category, columns": {"inputs": {k: [None if k == "skill" else v] for k, v in row.items()}},
            "boolean number": {"instances": [dict(row, horizon_years=True)]},
            "nested value": {
                "dataframe_split": {"columns": list(row), "data": [[{}, *list(row.values())[1:]]]}
            },
            "too many rows": {"dataframe_records": [row] * (settings.predict.max_items + 1)},
        }
        for label, body in cases.items():
            response = await client.post("/invocations", json=body)
            assert response.status_code == 400, label
            assert set(response.json()) == {"error_code", "message"}, label
            assert "7.5" not in response.json()["message"]
        out_of_range = await client.post("/invocations", json=cases["out of range"])
        assert "trend_score" in out_of_range.json()["message"]
        # The HR API keeps its own error shape.
        hr = await client.post("/v1/predictions", json={"items": [dict(row, trend_score=7.5)]})
        assert hr.status_code == 422 and set(hr.json()) == {"error"} and "code" in hr.json()["error"]
        unknown = await client.get("/v2/models/x/ready")
        assert unknown.json() == {"error": "no model with this name is served here"}


async def test_timeout_is_a_json_504(registry_dir, tmp_path):
    settings = make_settings(
        registry_dir, database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        limits=LimitsSettings(deadline_s=1e-6),
    )
    rows = valid_items(50, seed=8)
    async with RunningApp(settings) as client:
        response = await client.post("/invocations", json={"dataframe_records": rows})
        assert response.status_code == 504
        assert response.json()["error_code"] == "DEADLINE_EXCEEDED"
        v2 = await client.post(f"/v2/models/{MODEL}/infer", json=v2_body(rows))
        assert v2.status_code == 504 and "error" in v2.json()


async def test_not_ready_while_no_model_is_loaded(tmp_path):
    """An empty registry: nothing to serve, and every protocol says 503 in its own shape."""
    async with RunningApp(make_settings(tmp_path), wait=False) as client:
        checks = {
            "/ping": ("error_code", "TEMPORARILY_UNAVAILABLE"),
            "/health": ("error_code", "TEMPORARILY_UNAVAILABLE"),
            "/v2/health/ready": ("error", None),
            f"/v2/models/{MODEL}/ready": ("error", None),
        }
        for path, (key, value) in checks.items():
            response = await client.get(path)
            assert response.status_code == 503, path
            assert key in response.json() and (value is None or response.json()[key] == value)
            assert response.headers["retry-after"]
        assert (await client.get("/v2/health/live")).status_code == 200
        inv = await client.post("/invocations", json={"dataframe_records": valid_items(1)})
        assert inv.status_code == 503 and inv.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


async def test_openapi_documents_typed_request_bodies(client):
    spec = (await client.get("/openapi.json")).json()
    invocations = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(invocations) == {"application/json", "text/csv", "application/vnd.apache.parquet"}
    forms = {f["title"]: f for f in invocations["application/json"]["schema"]["oneOf"]}
    assert set(forms) == {"dataframe_split", "dataframe_records", "instances", "inputs"}
    row = forms["dataframe_records"]["properties"]["dataframe_records"]["items"]
    assert list(row["properties"]) == list(FEATURE_NAMES)
    assert row["properties"]["trend_score"]["maximum"] == 1
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    tensors = infer["schema"]["properties"]["inputs"]["items"]["oneOf"]
    assert [(t["properties"]["name"]["const"], t["properties"]["datatype"]["const"]) for t in tensors] == [
        (f.name, V2_TYPES[f.kind]) for f in FEATURES
    ]
    assert "/v2/models/{name}/versions/{version}/infer" in spec["paths"]
    json.dumps(spec)  # serialisable as served


async def test_unreadable_table_shapes_are_400_not_500(client):
    """Found by schemathesis: MLflow's parser raises TypeError on an object as a column name."""
    for body in (
        {"dataframe_split": {"columns": [{}], "data": [], "index": []}},
        {"dataframe_split": {"columns": [[1]], "data": [[1]]}},
    ):
        response = await client.post("/invocations", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
