"""A bounded load generator for failure tests: concurrent clients posting predictions."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.support.factories import valid_items


@dataclass
class LoadResult:
    ids: list[str] = field(default_factory=list)  # every prediction id answered with 200
    statuses: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    retry_after: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


async def run_load(
    client: httpx.AsyncClient,
    seconds: float,
    clients: int = 6,
    items_per_request: int = 3,
    max_requests: int = 3000,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """Post predictions from ``clients`` concurrent loops for at most ``seconds`` / ``max_requests``."""
    result = LoadResult()
    pool = valid_items(200, seed=11)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = 0

    async def one_client(n: int) -> None:
        nonlocal sent
        i = n
        while loop.time() < deadline and sent < max_requests and not (stop and stop.is_set()):
            sent += 1
            start = (i * items_per_request) % (len(pool) - items_per_request)
            i += clients
            try:
                response = await client.post(
                    "/v1/predictions", json={"items": pool[start : start + items_per_request]}
                )
            except httpx.TransportError:
                result.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            result.statuses[response.status_code] += 1
            if response.status_code == 200:
                result.ids.extend(p["prediction_id"] for p in response.json()["predictions"])
            elif "retry-after" in response.headers:
                result.retry_after.append(response.headers["retry-after"])

    await asyncio.gather(*(one_client(n) for n in range(clients)))
    return result
