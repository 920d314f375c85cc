"""Ground truth for logged predictions: every submission is kept, the latest one counts.

Feedback goes through the spool like predictions (same durability, one row per submission by its
own uuid). With the database up, an id no one knows (this worker's buffer, the database, the
host's spools) is refused at once; with it down the submission is accepted and matched when it
is drained (``app.prediction_log.drainer``): one whose prediction never turns up is dead-lettered.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only
from app.db.tables import PredictionFeedback
from app.errors import DatabaseUnavailable, PredictionNotFound
from app.prediction_log.ids import new_id
from app.prediction_log.log import PredictionLog
from app.prediction_log.peers import Row
from app.prediction_log.records import FeedbackRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feedback:
    prediction_id: uuid.UUID
    actual_level: str
    created_at: datetime


class FeedbackService:
    def __init__(self, *, engine: AsyncEngine, prediction_log: PredictionLog) -> None:
        self._engine = engine
        self._log = prediction_log

    async def submit(self, prediction_id: uuid.UUID, actual_level: str) -> Feedback:
        """Spool ground truth for a known prediction (or any, while the database cannot say)."""
        try:
            known = await self._log.exists(prediction_id)
        except DatabaseUnavailable:
            known = True  # matched at drain time; dead-lettered if the prediction never existed
        if not known:
            raise PredictionNotFound("no prediction with this id")
        record = FeedbackRecord(new_id(), prediction_id, actual_level, datetime.now(UTC))
        await self._log.record_feedback(record)
        return Feedback(prediction_id, actual_level, record.created_at)

    async def history(self, prediction_id: uuid.UUID) -> list[Feedback]:
        """All feedback for one prediction, newest first: the database's and the spools'."""
        rows = await self._stored(prediction_id)
        rows |= self._log.spooled_feedback(prediction_id)
        peers = await self._log.peers([prediction_id])
        rows |= peers.feedback.get(prediction_id, {})
        ordered = sorted(rows.values(), key=lambda r: (r["created_at"], str(r["id"])), reverse=True)
        return [Feedback(prediction_id, r["actual_level"], r["created_at"]) for r in ordered]

    async def latest(self, prediction_id: uuid.UUID) -> tuple[Feedback | None, int]:
        """The feedback that counts, and how many were submitted."""
        history = await self.history(prediction_id)
        return (history[0] if history else None), len(history)

    async def _stored(self, prediction_id: uuid.UUID) -> dict[uuid.UUID, Row]:
        table = PredictionFeedback.__table__
        stmt = select(table.c.id, table.c.actual_level, table.c.created_at).where(
            table.c.prediction_id == prediction_id
        )
        try:
            async with read_only(self._engine) as conn:
                return {row.id: row._asdict() for row in (await conn.execute(stmt))}
        except DatabaseUnavailable as exc:
            # Reached only for a prediction found in a spool (else the read was already a 503);
            # its feedback is then in the spools too, so answer with what they hold.
            log.warning("feedback: database unavailable (%s); showing spooled feedback only",
                        type(exc.__cause__).__name__)
            return {}
