"""Several worker processes behind one port: one /metrics for all of them, and no Nagle delay."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.api.server import _NoDelayMixin
from tests.support.factories import valid_items
from tests.support.procs import free_port as _free_port
from tests.support.stack import serving_versions, wait_until

CLI = [sys.executable, "-m", "app.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("FS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"} | extra


def wait_http_ready(base: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "server exited before it was ready"
        assert time.time() < deadline, f"server not ready after {timeout}s"
        time.sleep(0.3)


def predictions_per_worker(multiproc_dir: Path) -> dict[str, float]:
    """fs_predictions_total as each worker's own metric file holds it (pid -> count)."""
    counts = {}
    for path in multiproc_dir.glob("counter_*.db"):
        total = sum(
            s.value
            for metric in MultiProcessCollector.merge([str(path)], accumulate=True)
            for s in metric.samples
            if s.name == "fs_predictions_total"
        )
        counts[path.stem.removeprefix("counter_")] = total
    return counts


def _slots(db: Path, outcome: str | None = None) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT slot, outcome, report_id FROM scheduled_run "
                            "WHERE job = 'drift-check'").fetchall()
    return [r for r in rows if outcome is None or r[1] == outcome]


def _report_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {str(uuid.UUID(hex=r[0])) for r in conn.execute("SELECT id FROM drift_report")}


def _monitoring_run_slots(registry_dir: Path, since_ms: int) -> list[str]:
    client = MlflowClient(f"sqlite:///{registry_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("production-monitoring")
    runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {since_ms}")
    return [run.data.tags["slot"] for run in runs]


async def _post(base: str, item: dict) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return (await client.post("/v1/predictions", json={"items": [item]})).status_code


async def _one_request(base: str, item: dict) -> None:
    # A fresh connection per request, so the kernel can hand it to either worker.
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.post("/v1/predictions", json={"items": [item]})
        assert response.status_code == 200, response.text


@pytest.mark.slow
async def test_two_workers_share_one_metrics_scrape(registry_dir, tmp_path):
    data_dir = tmp_path / "data"
    multiproc_dir = data_dir / "prometheus-multiproc"
    multiproc_dir.mkdir(parents=True)
    (multiproc_dir / "counter_4242.db").write_bytes(b"left by an earlier run")
    port = _free_port()
    env = _clean_env(
        FS_DATA_DIR=str(data_dir),
        MLFLOW_TRACKING_URI=f"sqlite:///{registry_dir / 'mlflow.db'}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}",
        FS_MODEL_POLL_INTERVAL_S="1",
        FS_DRIFT_CHECK_INTERVAL_S="1",
        FS_DRIFT_CHECK_WINDOW="1h",
        FS_DRIFT_MIN_ROWS="5",  # a verdict on the few rows sent here (the default wants 100)
    )
    started_ms = int(time.time() * 1000)
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(base, proc)
        # Ready means every worker serves a model: the first burst gets no 503 from one still loading.
        assert len(serving_versions(base)) == 2
        burst = await asyncio.gather(*(_post(base, item) for item in valid_items(20, seed=3)))
        assert burst == [200] * 20
        assert not (multiproc_dir / "counter_4242.db").exists(), "stale metric files were kept"
        items = valid_items(10, seed=5)
        sent = len(burst)
        # Rounds of concurrent requests until both workers have answered some (bounded).
        for _ in range(40):
            await asyncio.gather(*(_one_request(base, item) for item in items))
            sent += len(items)
            per_worker = predictions_per_worker(multiproc_dir)
            if sum(1 for v in per_worker.values() if v > 0) >= 2:
                break
        per_worker = predictions_per_worker(multiproc_dir)
        assert sum(1 for v in per_worker.values() if v > 0) == 2, per_worker

        scrape = httpx.get(f"{base}/metrics", timeout=10).text
        samples = [s for f in text_string_to_metric_families(scrape) for s in f.samples]
        predicted = sum(s.value for s in samples if s.name == "fs_predictions_total")
        http_count = sum(
            s.value for s in samples
            if s.name == "http_requests_total" and s.labels.get("handler") == "/v1/predictions"
        )
        assert predicted == sent
        assert http_count == sent
        assert sum(per_worker.values()) == sent
        # Both workers report the model they serve (one series per live worker).
        info = [s for s in samples if s.name == "fs_model_info" and s.value == 1]
        assert len({s.labels["pid"] for s in info}) == 2

        # The periodic drift check runs once per slot, not once per worker.
        db = tmp_path / "p.db"
        wait_until(lambda: len(_slots(db, "ok")) >= 3, 60, "three drift checks", proc)
        # Slots first: a slot is marked ok only after its report and run exist, so both are seen.
        ok_reports = [report for _, _, report in _slots(db, "ok")]
        reports = _report_ids(db)
        slot_tags = _monitoring_run_slots(registry_dir, started_ms)
        assert len(set(ok_reports)) == len(ok_reports) and set(ok_reports) <= reports
        # One MLflow run per slot (one per worker would tag each slot twice), and one report per
        # checked slot, give or take the checks under way (at most one per worker) that have
        # stored their report but not yet marked their slot.
        assert len(slot_tags) == len(set(slot_tags)) >= len(ok_reports)
        assert len(ok_reports) <= len(reports) <= len(ok_reports) + 2, (reports, _slots(db))
        scrape = httpx.get(f"{base}/metrics", timeout=10).text
        assert "fs_drift_share " in scrape and "fs_drift_share NaN" not in scrape
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    print(f"{sent} predictions over 2 workers {per_worker}; one scrape read {predicted:.0f}")


class _Probe(asyncio.Protocol):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        self.seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        transport.close()


class _NoDelayProbe(_NoDelayMixin, _Probe):
    pass


async def _nodelay_seen(protocol_class) -> int:
    # The listening socket as uvicorn's multi-worker supervisor makes it: proto 0.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol_class(seen), sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return seen[0]


async def test_accepted_connections_get_tcp_nodelay():
    assert isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)
    # The bug this guards against: asyncio leaves Nagle on for such a socket ...
    assert await _nodelay_seen(_Probe) == 0
    # ... and the serving protocol turns it off.
    assert await _nodelay_seen(_NoDelayProbe) == 1


def test_multiprocess_dir_from_the_environment_is_emptied_of_metric_files_only(tmp_path):
    from app.api.server import MULTIPROC_ENV, prepare_multiprocess_dir

    assert MULTIPROC_ENV not in os.environ
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    (chosen / "counter_1.db").write_bytes(b"stale")
    (chosen / "notes.txt").write_text("not ours")
    try:
        os.environ[MULTIPROC_ENV] = str(chosen)
        assert prepare_multiprocess_dir(tmp_path / "data") == chosen
        assert sorted(p.name for p in chosen.iterdir()) == ["notes.txt"]
        del os.environ[MULTIPROC_ENV]
        default = tmp_path / "data" / "prometheus-multiproc"
        assert prepare_multiprocess_dir(tmp_path / "data") == default
        assert os.environ[MULTIPROC_ENV] == str(default) and default.is_dir()
    finally:
        os.environ.pop(MULTIPROC_ENV, None)  # the app's /metrics switches on this variable
