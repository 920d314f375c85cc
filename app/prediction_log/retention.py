"""Retention: delete predictions (and their feedback) older than a cut-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import parse_duration
from app.db.session import read_only, unit_of_work
from app.db.tables import Prediction, PredictionFeedback

_UNAVAILABLE = "the prediction database is unavailable; retry shortly"


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` (``0d``: everything); raises ValueError."""
    return parse_duration(text, allow_zero=True)


async def purge_older_than(engine: AsyncEngine, age: timedelta, *,
                           dry_run: bool = False) -> tuple[int, int]:
    """Delete predictions created before now - ``age`` and their feedback; (predictions, feedback).
    With ``dry_run`` only count them (the same conditions, nothing deleted).

    The range condition on ``created_at`` uses ``ix_prediction_created_at``.
    """
    cutoff = datetime.now(UTC) - age
    old = select(Prediction.id).where(Prediction.created_at < cutoff)
    if dry_run:
        async with read_only(engine, _UNAVAILABLE) as conn:
            feedback = await conn.scalar(select(func.count()).select_from(PredictionFeedback)
                                         .where(PredictionFeedback.prediction_id.in_(old)))
            predictions = await conn.scalar(select(func.count()).select_from(Prediction)
                                            .where(Prediction.created_at < cutoff))
        return predictions or 0, feedback or 0
    async with unit_of_work(engine, _UNAVAILABLE) as conn:
        deleted_feedback = await conn.execute(
            delete(PredictionFeedback).where(PredictionFeedback.prediction_id.in_(old))
        )
        deleted = await conn.execute(delete(Prediction).where(Prediction.created_at < cutoff))
    return deleted.rowcount, deleted_feedback.rowcount
