"""An app with its lifespan running, and an HTTP client talking to it through ASGI."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.db.migrate import upgrade
from app.main import create_app


async def wait_ready(client: httpx.AsyncClient, timeout: float = 30.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get("/health/ready")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"service not ready after {timeout}s: {response.text}")
        await asyncio.sleep(0.1)


class RunningApp:
    """``async with RunningApp(settings) as client``: migrated database, lifespan started, ready."""

    def __init__(self, settings: Settings, wait: bool = True) -> None:
        self.settings = settings
        self.wait = wait
        self.app = create_app(settings)

    async def __aenter__(self) -> httpx.AsyncClient:
        await upgrade(self.settings.db_url)
        self._lifespan = LifespanManager(self.app, startup_timeout=60, shutdown_timeout=60)
        manager = await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://testserver"
        )
        if self.wait:
            await wait_ready(self.client)
        return self.client

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(exc_type, exc, tb)

    @property
    def container(self) -> Any:
        return self.app.state.container
