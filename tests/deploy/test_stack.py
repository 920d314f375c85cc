"""The compose topology, started natively: a private Postgres cluster (prediction log and MLflow's
backend store), a real ``mlflow server`` on it with proxied local artifacts, the service with two
workers pointed at both, and Debian's Prometheus scraping it with the stack's own config."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest
from mlflow import MlflowClient

from tests.support.deploy_checks import DASHBOARD, dashboard_queries
from tests.support.factories import valid_items
from tests.support.stack import (
    CLI,
    cluster_backends,
    free_port,
    prom_query,
    prometheus,
    run_cli,
    service_env,
    serving_versions,
    started,
    wait_until,
)

MODEL = "future-skills-model"


def _predict(base: str, rounds: int, seed: int) -> tuple[int, set[str]]:
    rows, versions = 0, set()
    for i in range(rounds):
        # A new connection each time, so both workers get traffic.
        with httpx.Client(base_url=base, timeout=30) as client:
            response = client.post("/v1/predictions", json={"items": valid_items(2, seed=seed + i)})
        assert response.status_code == 200, response.text
        versions.add(response.json()["model"]["version"])
        rows += len(response.json()["predictions"])
    return rows, versions


async def _rows_by_version(pg_port: int) -> dict[str, int]:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/predictions")
    try:
        records = await conn.fetch("SELECT model_version, count(*) AS n FROM prediction GROUP BY 1")
    finally:
        await conn.close()
    return {r["model_version"]: r["n"] for r in records}


@pytest.mark.slow
def test_the_stack_runs_natively(tmp_path):
    with cluster_backends(tmp_path) as (pg_port, mlflow_url, base_env):
        env = service_env(
            MLFLOW_TRACKING_URI=mlflow_url,
            DATABASE_URL=f"postgresql://postgres@127.0.0.1:{pg_port}/predictions",
            FS_DATA_DIR=str(tmp_path / "service"),
            FS_TRAIN_ROWS="3000", FS_TRAIN_N_ESTIMATORS="30", FS_TRAIN_REFERENCE_ROWS="500",
            FS_MODEL_POLL_INTERVAL_S="1",
        )
        # The compose stack's one-shot step: migrate, create experiments, train + promote v1.
        assert "training the demo model" in run_cli(["bootstrap"], env).stderr
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [*CLI, "serve", "--port", str(port), "--workers", "2"]
        with started(serve, env, tmp_path / "service.log") as service:
            wait_until(lambda: len(serving_versions(base)) == 2, 120,
                       "both workers serving", service)
            with prometheus(f"127.0.0.1:{port}", tmp_path / "prometheus", base_env) as prom:
                _run_scenario(base, mlflow_url, prom, pg_port, env, service)
        assert service.returncode == 0, (tmp_path / "service.log").read_text()[-3000:]


def _run_scenario(base, mlflow_url, prom, pg_port, env, service):
    rows_v1, versions = _predict(base, rounds=6, seed=100)
    assert versions == {"1"}

    # Train version 2 through the MLflow server, then promote it by moving the alias.
    run_cli(["train", "--seed", "7"], env)
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    assert [v.version for v in client.search_model_versions(f"name = '{MODEL}'")] in (["2", "1"], ["1", "2"])
    client.set_model_version_tag(MODEL, "2", "semver", "1.1.0")
    client.set_registered_model_alias(MODEL, "production", "2")
    # Each worker follows the registry on its own and converges.
    wait_until(lambda: set(serving_versions(base).values()) == {"2"}
               and len(serving_versions(base)) == 2, 60, "both workers on version 2", service)
    rows_v2, versions = _predict(base, rounds=5, seed=200)
    assert versions == {"2"}
    total = rows_v1 + rows_v2

    # Prometheus scraped the service: its target is up and it holds the exact prediction count.
    wait_until(lambda: prom_query(prom, 'up{job="future-skills"}')
               and prom_query(prom, 'up{job="future-skills"}')[0]["value"][1] == "1", 30, "target up")
    wait_until(lambda: (r := prom_query(prom, "sum(fs_predictions_total)"))
               and float(r[0]["value"][1]) == total, 30, f"Prometheus sees {total} predictions")
    by_version = {r["metric"]["model_version"]: float(r["value"][1])
                  for r in prom_query(prom, "sum by (model_version) (fs_predictions_total)")}
    assert by_version == {"1": rows_v1, "2": rows_v2}
    serving = prom_query(prom, 'count(fs_model_info{model_version="2"} == 1)')
    assert float(serving[0]["value"][1]) == 2  # two workers, both on version 2
    # Every dashboard query is valid PromQL for this Prometheus.
    for _title, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        prom_query(prom, expr)  # asserts status == success
    latency = prom_query(prom, "histogram_quantile(0.99, sum by (le) "
                               "(rate(fs_prediction_latency_seconds_bucket[1m])))")
    assert latency and float(latency[0]["value"][1]) > 0

    # Every prediction is a row in Postgres, with the version that made it.
    rows = wait_until(lambda: (r := asyncio.run(_rows_by_version(pg_port)))
                      and sum(r.values()) == total and r, 30, "prediction rows in Postgres")
    assert rows == {"1": rows_v1, "2": rows_v2}
    print(f"stack: {total} predictions (v1 {rows_v1}, v2 {rows_v2}) scraped by Prometheus and in Postgres")

    # drift --json through the MLflow server: stdout is the JSON alone (MLflow's client prints
    # "View run ... at: URL" to stdout when it ends a run on a server), and 10 predictions of
    # version 2 are too few for a verdict.
    drift = run_cli(["drift", "--last", "1h", "--json"], env)
    report = json.loads(drift.stdout)
    assert report["model_version"] == "2" and report["current_rows"] == rows_v2
    assert report["status"] == "insufficient_data" and report["dataset_drift"] is None
    assert "logged to MLflow run" in drift.stderr
