"""The review queue: stored predictions flagged ``needs_review`` that no one has reviewed yet.

Oldest first, paged by a keyset on (created_at, id): ``after`` is the last item's prediction id, so
a page costs an index range scan on ``ix_prediction_needs_review_created_at`` however deep it is,
and reviews made between two pages never make the next one skip an item. "Not reviewed" is a
``NOT EXISTS`` on ``prediction_review``'s prediction_id index. A prediction joins the queue when its
record is drained to the database (usually within ``FS_SPOOL_DRAIN_INTERVAL_S``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only
from app.db.tables import Prediction, PredictionReview
from app.errors import InvalidInput
from app.ml.features import LEVELS

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
_UNAVAILABLE = "the review queue cannot be read right now; retry shortly"


@dataclass(frozen=True)
class QueueItem:
    prediction_id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    level: str
    probabilities: dict[str, float]
    confidence: float  # the predicted level's probability: what put it below the threshold


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    pending: int  # every flagged, unreviewed prediction, not just this page's
    next_after: uuid.UUID | None  # pass as ``after`` for the next page; None on the last page


_p, _r = Prediction.__table__, PredictionReview.__table__
_UNREVIEWED = and_(
    _p.c.needs_review == true(),
    ~exists().where(_r.c.prediction_id == _p.c.id),
)


async def read_page(engine: AsyncEngine, *, limit: int = DEFAULT_LIMIT,
                    after: uuid.UUID | None = None) -> QueuePage:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}", [
            {"field": "limit", "type": "range", "message": f"between 1 and {MAX_LIMIT}"}])
    async with read_only(engine, _UNAVAILABLE) as conn:
        stmt: Select[tuple[object, ...]] = select(
            _p.c.id, _p.c.created_at, _p.c.model_name, _p.c.model_version, _p.c.level,
            _p.c.probabilities,
        ).where(_UNREVIEWED)
        if after is not None:
            cursor = (await conn.execute(
                select(_p.c.created_at).where(_p.c.id == after))).scalar_one_or_none()
            if cursor is None:
                raise InvalidInput("after must be the prediction id of a queue item", [
                    {"field": "after", "type": "unknown_cursor",
                     "message": "not the id of a logged prediction"}])
            # The first bound is the index's range; the second breaks ties within one instant.
            stmt = stmt.where(_p.c.created_at >= cursor,
                              or_(_p.c.created_at > cursor, _p.c.id > after))
        rows = (await conn.execute(
            stmt.order_by(_p.c.created_at, _p.c.id).limit(limit))).all()
        pending = (await conn.execute(select(func.count()).select_from(_p).where(_UNREVIEWED))).scalar_one()
    items = [
        QueueItem(r.id, r.created_at, r.model_name, r.model_version, r.level, r.probabilities,
                  max(float(r.probabilities[level]) for level in LEVELS))
        for r in rows
    ]
    next_after = items[-1].prediction_id if len(items) == limit else None
    return QueuePage(items, int(pending), next_after)
