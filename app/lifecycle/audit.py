"""The append-only promotion audit (``model_promotion``): insert and read, never update or delete."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.dialect import lock_until_commit
from app.db.session import read_only, unavailable_as, unit_of_work
from app.db.tables import ModelPromotion
from app.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

ACTIONS = ("promote", "rollback", "auto", "reload-failed", "suspend", "resume", "challenger",
           "challenger-cleared", "reject-proposal")


@dataclass(frozen=True)
class AuditEntry:
    model_name: str
    actor: str  # a token's name or a process role, never a secret
    action: str
    from_version: str | None
    to_version: str | None
    reason: str | None
    outcome: str  # "success", "refused", "failed"
    detail: str | None = None


class PromotionAudit:
    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, entry: AuditEntry) -> None:
        _check(entry)
        async with unit_of_work(self._engine, "the audit store is unavailable; retry shortly") as conn:
            await conn.execute(insert(ModelPromotion).values(**entry.__dict__))
        _log(entry)

    async def record_on(self, conn: AsyncConnection, entry: AuditEntry) -> None:
        """Insert ``entry`` in the caller's transaction: it commits with the change it audits
        (the stop switch's state, ``app.lifecycle.suspension``)."""
        _check(entry)
        await conn.execute(insert(ModelPromotion).values(**entry.__dict__))

    @asynccontextmanager
    async def recording(self, entry: AuditEntry) -> AsyncIterator[None]:
        """Run the body inside the transaction that inserts ``entry``: the row commits only if
        the body succeeds, and the body never runs when the row cannot be written. Bodies for
        one model run one at a time, across processes and replicas: Postgres serializes them
        with a transaction-scoped advisory lock, SQLite with its single writer (the insert).

        Raises ``DatabaseUnavailable`` before the body when the database is down, and
        ``AuditCommitFailed`` when the final commit fails after the body has run (the caller
        undoes what the body did).
        """
        _check(entry)
        # Not unit_of_work: the body's own errors must pass through untranslated, and a failed
        # commit is AuditCommitFailed (the body has run), not DatabaseUnavailable.
        unavailable = "the audit store is unavailable; nothing was changed"
        async with unavailable_as(unavailable):
            conn = await self._engine.connect()
        try:
            async with unavailable_as(unavailable):
                transaction = await conn.begin()
                await lock_until_commit(conn, f"model_promotion:{entry.model_name}")
                await conn.execute(insert(ModelPromotion).values(**entry.__dict__))
            try:
                yield
            except BaseException:
                await _quietly(transaction.rollback())
                raise
            try:
                async with unavailable_as():
                    await transaction.commit()
            except DatabaseUnavailable as exc:
                raise AuditCommitFailed("the audit row could not be committed") from exc.__cause__
        finally:
            await _quietly(conn.close())
        _log(entry)

    async def list(self, model_name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        query = (
            select(ModelPromotion.__table__)
            .where(ModelPromotion.model_name == model_name)
            .order_by(ModelPromotion.created_at.desc())
            .limit(limit)
        )
        async with read_only(self._engine, "the audit store is unavailable; retry shortly") as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]


class AuditCommitFailed(Exception):
    """The body of ``PromotionAudit.recording`` ran but its audit row was not committed."""


def _check(entry: AuditEntry) -> None:
    if entry.action not in ACTIONS:
        raise ValueError(f"unknown audit action {entry.action!r}")


def _log(entry: AuditEntry) -> None:
    log.info("audit: %s %s %s -> %s by %s: %s", entry.model_name, entry.action,
             entry.from_version, entry.to_version, entry.actor, entry.outcome)


async def _quietly(awaitable: Awaitable[None]) -> None:
    """Roll back or close a connection the database may already have dropped."""
    try:
        async with unavailable_as():
            await awaitable
    except DatabaseUnavailable as exc:
        log.warning("audit connection cleanup failed: %s", type(exc.__cause__).__name__)
