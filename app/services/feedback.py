"""Ground truth for logged predictions: every submission is kept, the latest one counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import DB_ERRORS
from app.db.tables import PredictionFeedback
from app.errors import DatabaseUnavailable, PredictionNotFound
from app.services.prediction_log import PredictionLog


@dataclass(frozen=True)
class Feedback:
    prediction_id: uuid.UUID
    actual_level: str
    created_at: datetime


class FeedbackService:
    def __init__(self, engine: AsyncEngine, prediction_log: PredictionLog) -> None:
        self._engine = engine
        self._log = prediction_log

    async def submit(self, prediction_id: uuid.UUID, actual_level: str) -> Feedback:
        """Store ground truth for a known prediction (one still in the spool counts as known)."""
        if not await self._log.exists(prediction_id):
            raise PredictionNotFound("no prediction with this id")
        feedback = Feedback(prediction_id, actual_level, datetime.now(UTC))
        table = PredictionFeedback.__table__
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(table).values(
                        id=uuid.uuid4(), prediction_id=prediction_id, actual_level=actual_level,
                        created_at=feedback.created_at,
                    )
                )
        except DB_ERRORS as exc:
            raise DatabaseUnavailable("feedback cannot be stored right now; retry shortly") from exc
        return feedback

    async def history(self, prediction_id: uuid.UUID) -> list[Feedback]:
        """All feedback for one prediction, newest first."""
        table = PredictionFeedback.__table__
        stmt = (
            select(table.c.actual_level, table.c.created_at)
            .where(table.c.prediction_id == prediction_id)
            .order_by(table.c.created_at.desc(), table.c.id)
        )
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        except DB_ERRORS as exc:
            raise DatabaseUnavailable("feedback cannot be read right now; retry shortly") from exc
        return [Feedback(prediction_id, level, at) for level, at in rows]

    async def latest(self, prediction_id: uuid.UUID) -> tuple[Feedback | None, int]:
        """The feedback that counts, and how many were submitted."""
        history = await self.history(prediction_id)
        return (history[0] if history else None), len(history)

