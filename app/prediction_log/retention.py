"""Retention: delete predictions (and their feedback) older than a cut-off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only, unit_of_work
from app.db.tables import Prediction, PredictionFeedback

_UNAVAILABLE = "the prediction database is unavailable; retry shortly"

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s``."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError("expected a number and a unit (s, m, h, d, w), e.g. 90d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


async def purge_older_than(engine: AsyncEngine, age: timedelta,
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
        return predictions, feedback
    async with unit_of_work(engine, _UNAVAILABLE) as conn:
        feedback = await conn.execute(
            delete(PredictionFeedback).where(PredictionFeedback.prediction_id.in_(old))
        )
        predictions = await conn.execute(delete(Prediction).where(Prediction.created_at < cutoff))
    return predictions.rowcount, feedback.rowcount
