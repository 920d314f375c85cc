"""The append-only promotion audit (``model_promotion``): insert and read, never update or delete."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.tables import ModelPromotion

log = logging.getLogger(__name__)

ACTIONS = ("promote", "rollback", "auto", "reload-failed")


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
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, entry: AuditEntry) -> None:
        if entry.action not in ACTIONS:
            raise ValueError(f"unknown audit action {entry.action!r}")
        async with self._engine.begin() as conn:
            await conn.execute(insert(ModelPromotion).values(**entry.__dict__))
        log.info("audit: %s %s %s -> %s by %s: %s", entry.model_name, entry.action,
                 entry.from_version, entry.to_version, entry.actor, entry.outcome)

    async def list(self, model_name: str, limit: int = 100) -> list[dict]:
        """Newest first."""
        query = (
            select(ModelPromotion.__table__)
            .where(ModelPromotion.model_name == model_name)
            .order_by(ModelPromotion.created_at.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]
