"""The real server process killed or stopped under load: every answered prediction is stored once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.prediction_log.segments import SEGMENT_GLOB
from tests.support.dbcheck import assert_exactly_once, stored_ids
from tests.support.load import run_load
from tests.support.procs import free_port as _free_port

CLI = [sys.executable, "-m", "app.cli"]


def _env(registry_dir: Path, spool: Path, db_url: str, **extra: str) -> dict[str, str]:
    hidden = ("FS_", "MLFLOW_TRACKING", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    return env | {
        "FS_DATA_DIR": str(registry_dir),
        "FS_WORKERS": "1",  # SIGKILL/SIGTERM of the one serving process
        "FS_SPOOL_DIR": str(spool),
        "DATABASE_URL": db_url,
        "FS_SPOOL_DURABILITY": "fsync",
        # Batches wait up to 1 s, so a kill always finds records that are only in the spool.
        "FS_SPOOL_DRAIN_INTERVAL_S": "1.0",
        "FS_SPOOL_DRAIN_BATCH_SIZE": "100000",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    } | extra


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen([*CLI, "serve", "--port", str(self.port)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, "server exited during start-up"
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("server not ready")

    def send(self, sig: int) -> None:
        self.signalled = True
        self.proc.send_signal(sig)

    def finish(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Wait for the exit, signalling first unless a signal was already sent."""
        if self.proc.poll() is None and not getattr(self, "signalled", False):
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.log.close()


async def _wait_rows(url: str, ids: list[str], timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, per_id = await stored_ids(url)
        if all(i in per_id for i in ids):
            return
        await asyncio.sleep(0.3)


async def test_sigkill_under_load_then_restart_loses_nothing(registry_dir, tmp_path, cluster_db):
    # No batch is due before the kill (5 s), so every answered record is only in the spool then.
    env = _env(registry_dir, tmp_path / "spool", cluster_db, FS_SPOOL_DRAIN_INTERVAL_S="5.0")
    first = Server(env, tmp_path / "server.log")
    try:
        await asyncio.to_thread(first.wait_ready)
        async with httpx.AsyncClient(base_url=first.base, timeout=10) as client:
            stop = asyncio.Event()

            async def kill_soon() -> None:
                await asyncio.sleep(2.0)
                first.send(signal.SIGKILL)
                stop.set()

            load, _ = await asyncio.gather(run_load(client, seconds=5, stop=stop), kill_soon())
    finally:
        code = first.finish(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert load.ids and set(load.statuses) == {200}, load.statuses
    # Killed mid-load: some answered records were only in the spool.
    total_before, _ = await stored_ids(cluster_db)
    assert total_before == 0 and list((tmp_path / "spool").glob(SEGMENT_GLOB))

    env["FS_SPOOL_DRAIN_INTERVAL_S"] = "0.2"
    second = Server(env, tmp_path / "server.log")  # a new pid: the old segment is an orphan
    try:
        await asyncio.to_thread(second.wait_ready)
        await _wait_rows(cluster_db, load.ids)
    finally:
        assert second.finish() == 0
    await assert_exactly_once(cluster_db, load.ids)
    assert list((tmp_path / "spool").glob(SEGMENT_GLOB)) == []


async def test_sigterm_under_load_drains_before_exit(registry_dir, tmp_path, cluster_db):
    env = _env(registry_dir, tmp_path / "spool", cluster_db)
    server = Server(env, tmp_path / "server.log")
    try:
        await asyncio.to_thread(server.wait_ready)
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:

            async def term_soon() -> None:
                await asyncio.sleep(1.5)
                server.send(signal.SIGTERM)

            load, _ = await asyncio.gather(run_load(client, seconds=3), term_soon())
    finally:
        code = server.finish()
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert load.ids and set(load.statuses) == {200}, load.statuses  # no answer was an error
    # Drained before exit: every answered id is stored and nothing is left in the spool.
    await assert_exactly_once(cluster_db, load.ids)
    assert list((tmp_path / "spool").glob(SEGMENT_GLOB)) == []
