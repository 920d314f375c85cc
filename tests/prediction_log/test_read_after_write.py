"""Read-after-write on every worker of one host: a real 2-worker server, fresh connections.

A prediction answered by one worker is read, and given feedback, through whichever worker the
kernel hands the next connection to, before the drain has moved it to the database. The spool's
default durability (fsync) is kept: each prediction and feedback is on disk before its answer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time

import orjson
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from tests.serving.test_multiworker import CLI, _clean_env, wait_http_ready
from tests.support.factories import valid_items
from tests.support.procs import free_port
from tests.support.stack import serving_versions, wait_until

CHAINS = 1000
CONCURRENCY = 16


async def _http(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection (``Connection: close``): either worker may accept it.

    Raw HTTP/1.1 keeps the client's CPU out of the way of the two workers on a 2-core machine.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = orjson.dumps(body) if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    writer.write(head.encode() + payload)
    try:
        response = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def _chain(port: int, item: dict, n: int, statuses: list[tuple[str, int]]) -> str:
    status, body = await _http(port, "POST", "/v1/predictions", {"items": [item]})
    assert status == 200, body
    pid = json.loads(body)["predictions"][0]["prediction_id"]
    status, _ = await _http(port, "GET", f"/v1/predictions/{pid}")
    statuses.append(("get", status))
    level = ("LOW", "MEDIUM", "HIGH")[n % 3]
    status, _ = await _http(port, "POST", f"/v1/predictions/{pid}/feedback", {"actual_level": level})
    statuses.append(("feedback", status))
    if n % 5 == 0:  # and the feedback, still spooled on either worker, shows in the read
        status, body = await _http(port, "GET", f"/v1/predictions/{pid}")
        shown = json.loads(body).get("feedback") or {} if status == 200 else {}
        statuses.append(("get-feedback", status if shown.get("actual_level") == level else -1))
    return pid


async def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.scalar(select(func.count()).select_from(Prediction)),
                    await conn.scalar(select(func.count()).select_from(PredictionFeedback)))
    finally:
        await engine.dispose()


async def test_two_workers_read_their_writes_through_any_worker(registry_dir, tmp_path, pg_url):
    port = free_port()
    env = _clean_env(
        FS_DATA_DIR=str(tmp_path / "data"),
        MLFLOW_TRACKING_URI=f"sqlite:///{registry_dir / 'mlflow.db'}",
        DATABASE_URL=pg_url,
        FS_SPOOL_DRAIN_INTERVAL_S="1.0",  # most reads happen before the drain: the spool path
        FS_LOG_LEVEL="WARNING",
    )
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    # A file, not a pipe: a full pipe nobody reads would block the server's next log write.
    server_log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=server_log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    statuses: list[tuple[str, int]] = []
    try:
        wait_http_ready(base, proc)
        wait_until(lambda: len(serving_versions(base)) == 2, 90, "both workers serving", proc)
        items = valid_items(CHAINS, seed=12)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def bounded(n: int) -> str:
            async with gate:
                return await _chain(port, items[n], n, statuses)

        started = time.monotonic()
        await asyncio.gather(*(bounded(n) for n in range(CHAINS)))
        elapsed = time.monotonic() - started
        scrape = (await _http(port, "GET", "/metrics"))[1].decode()
        samples = [s for f in text_string_to_metric_families(scrape) for s in f.samples]
        peer_reads = sum(s.value for s in samples if s.name == "fs_spool_peer_reads_total")
        deadline = time.monotonic() + 30
        while (counts := await _counts(pg_url)) != (CHAINS, CHAINS) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        server_log.seek(0)
        output = server_log.read()
        server_log.close()
    bad = [(kind, status) for kind, status in statuses if status != 200]
    assert not bad, f"{len(bad)} failed reads/feedbacks, e.g. {bad[:5]}"
    assert len(statuses) == 2 * CHAINS + CHAINS // 5
    assert counts == (CHAINS, CHAINS), "exactly one row per prediction and per feedback"
    # The other worker's spool really was read (else this test proves nothing about it).
    assert peer_reads > 0, scrape
    assert proc.returncode == 0, output
    print(f"{CHAINS} chains in {elapsed:.1f}s; {peer_reads:.0f} reads from the other worker's spool")
