"""SIGTERM under load: readiness turns 503 first, admitted requests complete, the log is drained, exit 0."""

from __future__ import annotations

import asyncio
import signal

import httpx
from sqlalchemy import select

from app.db.engine import create_engine
from app.db.tables import Prediction
from tests.support.factories import valid_items
from tests.support.live_server import LiveServer


async def test_sigterm_under_load_loses_nothing(registry_dir, tmp_path):
    db = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    server = LiveServer(registry_dir, db, FS_LIMIT_SHUTDOWN_DELAY_S="1.5")
    base = server.base_url
    statuses: list[int] = []
    ids: list[str] = []
    saw_not_ready = asyncio.Event()
    items = valid_items(50, seed=9)
    await asyncio.to_thread(server.start)
    proc = server.proc
    try:

        async def client_loop(n: int) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                i = 0
                # Like a load balancer: stop sending once readiness says so; bounded in count.
                while not saw_not_ready.is_set() and i < 2000:
                    response = await client.post(
                        "/v1/predictions", json={"items": [items[(n + i) % len(items)]]}
                    )
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        ids.append(response.json()["predictions"][0]["prediction_id"])
                    i += 1

        async def watch_readiness() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                for _ in range(300):
                    if (await client.get("/health/ready")).status_code == 503:
                        saw_not_ready.set()
                        return
                    await asyncio.sleep(0.02)

        clients = [asyncio.create_task(client_loop(n)) for n in range(8)]
        await asyncio.sleep(1.0)
        watcher = asyncio.create_task(watch_readiness())
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(watcher, 20)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    finally:
        await asyncio.to_thread(server.stop)
    output = server.output

    assert saw_not_ready.is_set(), "readiness never turned 503 during shutdown"
    assert proc.returncode == 0, output
    assert len(statuses) > 20
    assert set(statuses) == {200}, statuses
    engine = create_engine(db)
    try:
        async with engine.connect() as conn:
            stored = [str(i) for i in (await conn.scalars(select(Prediction.id))).all()]
    finally:
        await engine.dispose()
    assert sorted(stored) == sorted(ids)
    assert "draining" in output
