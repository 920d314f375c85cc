"""/invocations against MLflow's own scoring server, run as the oracle on the same registered model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from app.ml.synthetic import generate
from tests.support.factories import valid_items
from tests.support.procs import free_port, running
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"


def _rows(n: int, seed: int) -> list[dict]:
    return valid_items(n, seed=seed)


ROWS = _rows(40, seed=101)
# Drifted traffic too, so every level shows up in the comparison.
DRIFTED = generate(40, seed=5, shift=["trend_score", "internal_usage"], with_label=False).to_dict("records")
FRAME = pd.DataFrame(ROWS)


def _json(body) -> bytes:
    return json.dumps(body).encode()


def _without(row: dict, column: str) -> dict:
    return {k: v for k, v in row.items() if k != column}


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _bad_csv_value() -> bytes:
    frame = FRAME.head(3).astype({"trend_score": object})
    frame.loc[1, "trend_score"] = "abc"
    return _csv(frame)


# (id, body, content type): every accepted form, CSV, parquet, params, and the invalid ones.
CORPUS = [
    ("records", _json({"dataframe_records": ROWS}), JSON),
    ("records-drifted", _json({"dataframe_records": DRIFTED}), JSON),
    ("split", _json({"dataframe_split": FRAME.to_dict(orient="split")}), JSON),
    ("split-no-index",
     _json({"dataframe_split": {"columns": list(FRAME), "data": FRAME.values.tolist()}}), JSON),
    ("instances", _json({"instances": ROWS[:10]}), JSON),
    ("inputs-columns", _json({"inputs": FRAME.head(10).to_dict(orient="list")}), JSON),
    ("inputs-rows", _json({"inputs": ROWS[:10]}), JSON),
    ("records+params", _json({"dataframe_records": ROWS[:5], "params": {"threshold": 0.3}}), JSON),
    ("split+params", _json({"dataframe_split": FRAME.head(5).to_dict(orient="split"), "params": {}}), JSON),
    ("charset-utf8", _json({"dataframe_records": ROWS[:3]}), "application/json; charset=UTF-8"),
    ("extra-column", _json({"dataframe_records": [dict(r, note="x") for r in ROWS[:3]]}), JSON),
    ("ints-as-floats",
     _json({"dataframe_records": [dict(r, horizon_years=float(r["horizon_years"])) for r in ROWS[:3]]}),
     JSON),
    ("numbers-as-strings",
     _json({"dataframe_records": [dict(r, trend_score=str(r["trend_score"])) for r in ROWS[:3]]}), JSON),
    ("csv", _csv(FRAME), CSV),
    ("csv-charset", _csv(FRAME.head(5)), "text/csv; charset=utf-8"),
    ("parquet", FRAME.to_parquet(), PARQUET),
    ("parquet-drifted", pd.DataFrame(DRIFTED).to_parquet(), PARQUET),
    # invalid
    ("missing-column", _json({"dataframe_records": [_without(r, "skill") for r in ROWS[:3]]}), JSON),
    ("missing-column-split", _json({"dataframe_split": {"data": FRAME.head(2).values.tolist()}}), JSON),
    ("missing-column-csv", _csv(FRAME.head(3).drop(columns=["department"])), CSV),
    ("missing-column-parquet", FRAME.head(3).drop(columns=["horizon_years"]).to_parquet(), PARQUET),
    ("uncastable-value", _json({"dataframe_records": [dict(ROWS[0], trend_score="abc")]}), JSON),
    ("uncastable-value-inputs",
     _json({"inputs": dict(FRAME.head(2).to_dict(orient="list"), avg_salary_k=["x", "y"])}), JSON),
    ("uncastable-value-csv", _bad_csv_value(), CSV),
    ("zero-format-keys", _json({"params": {"a": 1}}), JSON),
    ("empty-object", _json({}), JSON),
    ("two-format-keys", _json({"dataframe_records": ROWS[:1], "instances": ROWS[:1]}), JSON),
    ("list-body", _json(ROWS[:2]), JSON),
    ("scalar-body", b"3", JSON),
    ("invalid-json", b'{"dataframe_records": [', JSON),
    ("not-utf8", b"\xff\xfe{}", JSON),
    ("records-not-a-list", _json({"dataframe_records": ROWS[0]}), JSON),
    ("split-empty", _json({"dataframe_split": {"columns": list(FRAME), "data": []}}), JSON),
    ("split-unknown-key", _json({"dataframe_split": {"columns": list(FRAME), "data": [], "foo": 1}}), JSON),
    ("split-not-a-dict", _json({"dataframe_split": [1, 2]}), JSON),
    ("inputs-scalar", _json({"inputs": "x"}), JSON),
    ("bad-parquet", b"not parquet", PARQUET),
    ("empty-csv", b"", CSV),
    ("wrong-content-type", _json({"dataframe_records": ROWS[:1]}), "text/plain"),
    ("wrong-charset", _csv(FRAME.head(1)), "text/csv; charset=latin-1"),
    ("unknown-parameter", _json({"dataframe_records": ROWS[:1]}), "application/json; format=pandas"),
]


@pytest.fixture(scope="module")
def oracle(registry_dir: Path) -> str:
    """``mlflow models serve`` on version 1 of the registered model, once for this module."""
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "MLFLOW_TRACKING"))}
    env |= {
        "MLFLOW_TRACKING_URI": make_settings(registry_dir).tracking_uri,
        "PATH": bindir + os.pathsep + env.get("PATH", ""),  # it runs `uvicorn` from PATH
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    port = free_port()
    args = [
        str(Path(bindir) / "mlflow"), "models", "serve", "-m", "models:/future-skills-model/1",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]
    with running(args, env, f"http://127.0.0.1:{port}/ping"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def ours(registry_dir: Path, tmp_path_factory):
    db = tmp_path_factory.mktemp("oracle") / "p.db"
    settings = make_settings(registry_dir, database_url=f"sqlite+aiosqlite:///{db}")
    async with RunningApp(settings) as client:
        yield client


@pytest.mark.slow
@pytest.mark.parametrize(("body", "content_type"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
async def test_invocations_match_mlflow(oracle: str, ours: httpx.AsyncClient, body: bytes, content_type: str):
    headers = {"Content-Type": content_type}
    async with httpx.AsyncClient(timeout=60) as http:
        expected = await http.post(f"{oracle}/invocations", content=body, headers=headers)
    got = await ours.post("/invocations", content=body, headers=headers)

    assert got.status_code == expected.status_code, got.text
    assert got.headers["content-type"] == "application/json"
    answer = got.json()
    if expected.status_code == 200:
        assert answer == expected.json()
        assert len(answer["predictions"]) > 0
    elif expected.status_code == 415:  # MLflow answers text/plain there; we answer JSON
        assert set(answer) == {"error_code", "message"}
    else:
        assert answer["error_code"] == expected.json()["error_code"]
        assert set(answer) == {"error_code", "message"}
        assert "abc" not in answer["message"] and "Manager" not in answer["message"]


@pytest.mark.slow
async def test_ping_health_version_match_mlflow(oracle: str, ours: httpx.AsyncClient):
    async with httpx.AsyncClient(timeout=30) as http:
        for path in ("/ping", "/health", "/version"):
            expected = await http.get(f"{oracle}{path}")
            got = await ours.get(path)
            assert (got.status_code, got.content) == (expected.status_code, expected.content), path


@pytest.mark.slow
async def test_missing_content_type_is_415_not_mlflows_500(oracle: str, ours: httpx.AsyncClient):
    body = _json({"dataframe_records": ROWS[:1]})
    async with httpx.AsyncClient(timeout=30) as http:
        expected = await http.post(f"{oracle}/invocations", content=body)
    assert expected.status_code == 500  # the MLflow bug this service deliberately does not copy
    got = await ours.post("/invocations", content=body)
    assert got.status_code == 415
    assert got.json()["error_code"] == "BAD_REQUEST"
    assert "Content-Type" in got.json()["message"]


@pytest.mark.slow
async def test_corpus_predictions_cover_every_level(oracle: str):
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(f"{oracle}/invocations", json={"dataframe_records": ROWS + DRIFTED})
    assert set(response.json()["predictions"]) == {"LOW", "MEDIUM", "HIGH"}
