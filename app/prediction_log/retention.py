"""Retention: delete predictions older than a cut-off, with everything attached to them (feedback,
reviews, explanations, the challenger's shadow answers); never records younger than the minimum
retention unless forced.

The minimum (``FS_RETENTION_MIN_AGE``, six months by default) keeps decisions traceable for as long
as they may be questioned: a mistyped ``--older-than 9d`` must not wipe the record of last week's
decisions. Erasing one subject (``app.prediction_log.erasure``) is not bound by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config import parse_duration
from app.db.session import read_only, unit_of_work
from app.db.tables import (
    Prediction,
    PredictionExplanation,
    PredictionFeedback,
    PredictionReview,
    ShadowPrediction,
)
from app.errors import Conflict

_UNAVAILABLE = "the prediction database is unavailable; retry shortly"
# What hangs off a prediction by its id (no foreign keys: records may arrive from the spool later).
ATTACHED: tuple[Any, ...] = (PredictionFeedback, PredictionReview, PredictionExplanation,
                             ShadowPrediction)


class RetentionRefused(Conflict):
    """A purge would delete records younger than the minimum retention."""

    code = "retention_minimum"


@dataclass(frozen=True)
class Removed:
    """Rows removed (or, in a dry run, that would be), per table."""

    prediction: int = 0
    prediction_feedback: int = 0
    prediction_review: int = 0
    prediction_explanation: int = 0
    shadow_prediction: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` (``0d``: everything); raises ValueError."""
    return parse_duration(text, allow_zero=True)


def check_minimum(age: timedelta, minimum: timedelta, *, force: bool) -> None:
    """Refuse an age below the minimum retention unless ``force``."""
    if age < minimum and not force:
        raise RetentionRefused(
            f"refused: records younger than the minimum retention FS_RETENTION_MIN_AGE "
            f"({_days(minimum)}) are kept; --older-than {_days(age)} would delete some. "
            "Pass --force to delete them anyway")


async def purge_older_than(engine: AsyncEngine, age: timedelta, *, minimum: timedelta,
                           force: bool = False, dry_run: bool = False) -> Removed:
    """Delete predictions created before now - ``age`` and what is attached to them.
    With ``dry_run`` only count them (the same conditions, nothing deleted, never refused).

    The range condition on ``created_at`` uses ``ix_prediction_created_at``.
    """
    if not dry_run:
        check_minimum(age, minimum, force=force)
    cutoff = datetime.now(UTC) - age
    old = select(Prediction.id).where(Prediction.created_at < cutoff)
    if dry_run:
        async with read_only(engine, _UNAVAILABLE) as conn:
            return await count_removed(conn, old)
    async with unit_of_work(engine, _UNAVAILABLE) as conn:
        return await delete_removed(conn, old)


async def count_removed(conn: AsyncConnection, ids: Select[Any]) -> Removed:
    """What ``delete_removed`` would remove for the predictions ``ids`` selects."""
    counts = {
        table.__tablename__: await conn.scalar(
            select(func.count()).select_from(table).where(table.prediction_id.in_(ids)))
        for table in ATTACHED
    }
    predictions = await conn.scalar(select(func.count()).select_from(Prediction)
                                    .where(Prediction.id.in_(ids)))
    return Removed(prediction=predictions or 0, **{k: v or 0 for k, v in counts.items()})


async def delete_removed(conn: AsyncConnection, ids: Select[Any]) -> Removed:
    """Delete the predictions ``ids`` selects and everything attached to them, in ``conn``'s
    transaction; attachments first, while the selection still finds their predictions."""
    counts = {
        table.__tablename__: (await conn.execute(
            delete(table).where(table.prediction_id.in_(ids)))).rowcount
        for table in ATTACHED
    }
    deleted = await conn.execute(delete(Prediction).where(Prediction.id.in_(ids)))
    return Removed(prediction=deleted.rowcount, **counts)


def _days(span: timedelta) -> str:
    return f"{span.days}d" if span.total_seconds() % 86400 == 0 else f"{span.total_seconds():g}s"
