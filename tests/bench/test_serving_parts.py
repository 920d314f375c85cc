"""The parts of the serving benchmark that need no server: the floor app, MLServer's request
shape, the ratios and the issue-15 targets (the benchmark itself is left to a manual run)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.schemas.predictions import PredictionResponse
from bench import floor_app, mlserver_peer, procs, serving
from bench.loadgen import LoadResult


def test_floor_parses_the_request_model_and_answers_the_service_shape():
    client = TestClient(floor_app.app)
    rows = serving.sample_rows(3)
    r = client.post("/v1/predictions", content=serving.ours_body(rows),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200
    answer = PredictionResponse.model_validate(r.json())  # the service's own response model
    assert len(answer.predictions) == 3
    assert len({p.prediction_id for p in answer.predictions}) == 3
    bad = client.post("/v1/predictions", json={"items": [rows[0] | {"horizon_years": "3"}]})
    assert bad.status_code == 422  # the same validation as the service's request model
    assert client.post("/v1/predictions", json={"items": []}).status_code == 422
    assert client.get("/health/ready").status_code == 200


def test_mlserver_body_has_one_typed_input_per_column():
    rows = serving.sample_rows(4)
    body = orjson.loads(mlserver_peer.body(rows))
    assert body["parameters"] == {"content_type": "pd"}
    by_name = {i["name"]: i for i in body["inputs"]}
    assert len(by_name) == 12 and all(i["shape"] == [4, 1] for i in by_name.values())
    assert by_name["job_role"]["datatype"] == "BYTES"
    assert by_name["job_role"]["parameters"] == {"content_type": "str"}
    assert by_name["horizon_years"]["datatype"] == "INT64"
    assert by_name["trend_score"]["data"] == [r["trend_score"] for r in rows]
    answer = {"outputs": [{"name": "output-1", "datatype": "BYTES", "shape": [2, 1],
                           "data": ["LOW", "HIGH"]}]}
    assert mlserver_peer.labels(answer) == ["LOW", "HIGH"]


def test_mlserver_unavailable_is_a_reason_not_a_crash(tmp_path):
    (tmp_path / "file").write_text("not a directory")  # so the venv cannot be created under it
    with pytest.raises(mlserver_peer.Unavailable, match="installing MLServer"):
        mlserver_peer.ensure_venv(tmp_path / "file" / "venv", tmp_path / "install.log")


def _results(rps: float, p50: float, errors: int = 0) -> dict:
    # rows/req 100: one tenth of the single-row request rate
    return {(rows, clients): LoadResult(int(rps * 10 / (1 if rows == 1 else 10)), 10.0, errors,
                                        p50, p50 * 2, p50 * 3, "wrk")
            for rows in serving.ROWS_PER_REQUEST for clients in serving.CLIENTS}


def _server(rps: float, p50: float, cold: float = 5.0, rss: float = 300.0) -> dict:
    return {"cold_start_s": cold, "rss_idle": [(1, rss, "python")], "rss": [(1, rss, "python")],
            "results": _results(rps, p50)}


def test_targets_and_ratios():
    servers = {"ours": _server(3000, 1.0), "floor": _server(5000, 0.3),
               "mlflow": _server(40, 20.0, cold=10.0)}
    met = {t["target"].split(" (")[0]: t["met"] for t in serving.targets(servers)}
    assert met["64 conns, single-row: req/s >= 0.5x the framework floor's"] is True
    assert met["64 conns, single-row: req/s >= 60x MLflow's"] is True  # 3000 / 40 = 75
    assert met["1 conn, single-row: p50 <= 1/5 of MLflow's"] is True
    assert met["8 conns, 100-row: rows/s >= 5x MLflow's"] is True
    assert met["idle RSS of a worker <= 400 MiB"] is True
    assert met["cold start to ready <= MLflow's"] is True
    assert met["64 conns, single-row: req/s >= 2x MLServer's"] is None  # the peer did not run
    servers["mlserver"] = _server(2000, 15.0)
    met = {t["target"]: t["met"] for t in serving.targets(servers)}
    assert met["64 conns, single-row: req/s >= 2x MLServer's"] is False  # 1.5x
    assert met["1 conn, single-row: p50 <= 0.5x MLServer's"] is True
    r = serving.ratios(servers)
    assert r["floor"]["1x64"]["req/s"] == pytest.approx(0.6)
    assert r["mlflow"]["100x8"]["rows/s"] == pytest.approx(75)
    assert r["mlserver"]["1x1"]["p50 ms"] == pytest.approx(1 / 15)


def test_peers_option():
    assert serving.parse_peers("mlflow,mlserver") == ("mlflow", "mlserver")
    with pytest.raises(argparse.ArgumentTypeError):
        serving.parse_peers("mlflow,torchserve")


def test_a_peer_run_without_answers_is_not_a_target_met():
    servers = {"ours": _server(3000, 1.0), "floor": _server(5000, 0.3), "mlflow": _server(40, 20.0)}
    servers["mlflow"]["results"][(100, 8)] = LoadResult(0, 10.0, 0, 0.0, 0.0, 0.0, "wrk")
    met = {t["target"]: t["met"] for t in serving.targets(servers)}
    assert met["8 conns, 100-row: rows/s >= 5x MLflow's"] is None


def test_wait_idle_sees_an_idle_and_a_busy_process():
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        waited = procs.wait_idle(idle.pid, timeout=5)
        assert waited is not None and waited < 2
        assert procs.wait_idle(busy.pid, timeout=1) is None
    finally:
        idle.kill(), busy.kill()
        idle.wait(), busy.wait()
