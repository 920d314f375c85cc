"""What every command shares: its components from the one composition root, and who it is.

Commands are synchronous (Typer); ``run`` builds the container (``app.container.build``, nothing
serving is started), runs the command's async body with it, and tears it down.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.cli.output import fail
from app.config import Settings
from app.container import Container, build
from app.db.migrate import upgrade
from app.errors import DomainError

T = TypeVar("T")


def run(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    """``work(container)`` on a fresh event loop, with every component built and then stopped."""

    async def main() -> T:
        async with build(settings) as container:
            return await work(container)

    return asyncio.run(main())


def actor() -> str:
    """The audit's actor for a command: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def run_change(settings: Settings, work: Callable[[Container], Awaitable[None]]) -> None:
    """``work`` on an up-to-date schema (a change writes audit rows); a refused or failed change
    is one red line and exit 2."""

    async def migrated(container: Container) -> None:
        await upgrade(settings.db_url)
        await work(container)

    try:
        run(settings, migrated)
    except DomainError as exc:
        fail(exc)
