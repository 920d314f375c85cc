"""Reviews of predictions by people: append-only, the latest one is the final decision.

A review ``accept``s the model's level or ``override``s it with another; either way it stores the
final decision's level, so "the latest review's level, else the model's" is the final level. Reviews
are written straight to the database (a person's act, rare, and read back at once), not through the
spool; the prediction they judge may still be in a spool (``PredictionLog.get`` finds it there).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only, unit_of_work
from app.db.tables import PredictionReview
from app.errors import DatabaseUnavailable, InvalidInput, PredictionNotFound
from app.ml.features import LEVELS
from app.oversight import queue as review_queue
from app.prediction_log.ids import new_id
from app.prediction_log.log import PredictionLog

log = logging.getLogger(__name__)

ACCEPT, OVERRIDE = "accept", "override"
DECISIONS = (ACCEPT, OVERRIDE)
MAX_REASON = 2000
_UNAVAILABLE = "reviews cannot be stored or read right now; retry shortly"


@dataclass(frozen=True)
class Review:
    id: uuid.UUID
    prediction_id: uuid.UUID
    reviewer: str  # a reviewer token's name, or "admin:<name>"; never a secret
    decision: str
    level: str  # the final decision's level
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class Oversight:
    """What people made of one prediction: its reviews (oldest first) and the final level."""

    needs_review: bool
    reviews: list[Review]
    final_level: str


def _invalid(field: str, kind: str, message: str) -> InvalidInput:
    return InvalidInput(message, [{"field": field, "type": kind, "message": message}])


def final_level(model_level: str, reviews: list[Review]) -> str:
    return reviews[-1].level if reviews else model_level


def check(decision: str, level: str | None, reason: str, model_level: str) -> str:
    """The final level a valid review gives, or InvalidInput naming the field (values never echoed)."""
    if decision not in DECISIONS:
        raise _invalid("decision", "enum", "decision must be accept or override")
    if not reason.strip():
        raise _invalid("reason", "blank", "reason must say why, in words")
    if len(reason) > MAX_REASON:
        raise _invalid("reason", "too_long", f"reason is limited to {MAX_REASON} characters")
    if decision == ACCEPT:
        if level is not None:
            raise _invalid("level", "not_allowed", "accept keeps the model's level; send no level")
        return model_level
    if level is None:
        raise _invalid("level", "missing", "override needs the level that replaces the model's")
    if level not in LEVELS:
        raise _invalid("level", "enum", "level must be LOW, MEDIUM or HIGH")
    if level == model_level:
        raise _invalid("level", "same_as_model",
                       "an override must change the model's level; use accept to agree with it")
    return level


class ReviewService:
    def __init__(self, *, engine: AsyncEngine, prediction_log: PredictionLog) -> None:
        self._engine = engine
        self._log = prediction_log

    async def submit(
        self, prediction_id: uuid.UUID, *, reviewer: str, decision: str, level: str | None,
        reason: str,
    ) -> Review:
        """Store one review of a known prediction (in the database or still in a spool)."""
        row = await self._log.get(prediction_id)
        if row is None:
            raise PredictionNotFound("no prediction with this id")
        final = check(decision, level, reason, row["level"])
        review = Review(new_id(), prediction_id, reviewer, decision, final, reason, datetime.now(UTC))
        async with unit_of_work(self._engine, _UNAVAILABLE) as conn:
            await conn.execute(insert(PredictionReview).values(
                id=review.id, prediction_id=prediction_id, reviewer=reviewer, decision=decision,
                level=final, reason=reason, created_at=review.created_at,
            ))
        log.info("review: %s %s prediction %s (final level %s)", reviewer, decision,
                 prediction_id, final)
        return review

    async def for_prediction(self, prediction_id: uuid.UUID) -> list[Review]:
        """Every review of one prediction, oldest first."""
        t = PredictionReview.__table__
        stmt = (select(t).where(t.c.prediction_id == prediction_id)
                .order_by(t.c.created_at, t.c.id))
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            return [_review(r) for r in (await conn.execute(stmt)).mappings()]

    async def oversight_of(self, row: Mapping[str, Any]) -> Oversight:
        """The oversight part of a logged prediction ``row`` (as ``PredictionLog.get`` returns it).

        With the database down, a prediction found in a spool is shown without its reviews (as its
        feedback is shown from the spools only): reviews live in the database alone.
        """
        try:
            reviews = await self.for_prediction(row["id"])
        except DatabaseUnavailable:
            log.warning("reviews: database unavailable; prediction %s shown without reviews", row["id"])
            reviews = []
        return Oversight(bool(row.get("needs_review", False)), reviews,
                         final_level(row["level"], reviews))

    async def queue(self, *, limit: int = review_queue.DEFAULT_LIMIT,
                    after: uuid.UUID | None = None) -> review_queue.QueuePage:
        """Flagged predictions no one has reviewed yet, oldest first (``app.oversight.queue``)."""
        return await review_queue.read_page(self._engine, limit=limit, after=after)


def _review(row: RowMapping) -> Review:
    return Review(row["id"], row["prediction_id"], row["reviewer"], row["decision"], row["level"],
                  row["reason"], row["created_at"])
