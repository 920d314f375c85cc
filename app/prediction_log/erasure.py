"""Erasure of one subject: every prediction made about them, with its feedback, reviews and
explanations, found by the pseudonym the service stores (``hash_subject`` of the raw id with
``FS_SUBJECT_HMAC_KEY``, exactly as the prediction core computes it). The erasure is recorded in
``subject_erasure`` (actor, pseudonym, rows removed per table); the raw id is never stored, logged
or printed.

Records still in a replica's spool (not yet drained, or held there through a database outage)
would land after the erasure. So the erasure row is committed first, as a tombstone, and only then
are the rows deleted; the drainer, after each write, deletes the predictions it just wrote whose
pseudonym has a tombstone at least as recent as the prediction (``drop_erased``). Either the
deletion sees a drained row, or the drainer's check, which runs after that row is committed, sees
the tombstone. Predictions made after the erasure (the subject is scored again) are kept. Clocks of
other hosts may run ahead by ``FS_SPOOL_CLOCK_SKEW_S``; that margin counts as "before".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only, unit_of_work
from app.db.tables import Prediction, SubjectErasure
from app.prediction_log.privacy import hash_subject
from app.prediction_log.retention import Removed, count_removed, delete_removed

log = logging.getLogger(__name__)

_UNAVAILABLE = "the prediction database is unavailable; nothing was erased, retry shortly"


@dataclass(frozen=True)
class ErasureReport:
    subject_hash: str
    removed: Removed
    at: datetime
    erasure_id: uuid.UUID | None  # None in a dry run (nothing recorded)


def pseudonym(subject_key: bytes, subject_id: str) -> str:
    """The stored pseudonym of ``subject_id`` (what ``prediction.subject_hash`` holds)."""
    hashed = hash_subject(subject_key, subject_id)
    assert hashed is not None  # only None for a None id
    return hashed


async def erase_subject(engine: AsyncEngine, *, subject_key: bytes, subject_id: str, actor: str,
                        clock_skew: timedelta, dry_run: bool = False) -> ErasureReport:
    """Delete everything about the subject ``subject_id`` made up to now; record the erasure."""
    subject_hash = pseudonym(subject_key, subject_id)
    at = datetime.now(UTC)
    ids = select(Prediction.id).where(Prediction.subject_hash == subject_hash,
                                      Prediction.created_at <= at + clock_skew)
    if dry_run:
        async with read_only(engine, _UNAVAILABLE) as conn:
            return ErasureReport(subject_hash, await count_removed(conn, ids), at, None)
    erasure_id = uuid.uuid4()
    # The tombstone first, committed on its own: from now on the drainers drop what they write of
    # this subject's older records (see the module docstring for why the order matters).
    async with unit_of_work(engine, _UNAVAILABLE) as conn:
        await conn.execute(insert(SubjectErasure).values(
            id=erasure_id, created_at=at, actor=actor, subject_hash=subject_hash, removed={}))
    async with unit_of_work(engine, "the prediction database failed during the erasure; the "
                            "erasure is recorded, run the command again") as conn:
        removed = await delete_removed(conn, ids)
        await conn.execute(update(SubjectErasure).where(SubjectErasure.id == erasure_id)
                           .values(removed=removed.as_dict()))
    log.info("erased subject %s by %s: %s", subject_hash[:12], actor, removed.as_dict())
    return ErasureReport(subject_hash, removed, at, erasure_id)


async def drop_erased(engine: AsyncEngine, rows: Iterable[Mapping[str, Any]],
                      clock_skew: timedelta) -> int:
    """After a drain write: delete the just-written predictions (and anything attached) of subjects
    erased since they were made; the number of predictions dropped. One small read per batch that
    has subject ids at all, nothing for the others."""
    made = [(r["id"], r["subject_hash"], r["created_at"]) for r in rows if r.get("subject_hash")]
    if not made:
        return 0
    hashes = {h for _, h, _ in made}
    async with engine.connect() as conn:
        result = await conn.execute(
            select(SubjectErasure.subject_hash, func.max(SubjectErasure.created_at))
            .where(SubjectErasure.subject_hash.in_(hashes)).group_by(SubjectErasure.subject_hash))
        erased = {h: _aware(at) for h, at in result.all()}
    if not erased:
        return 0
    doomed = [pid for pid, h, created in made
              if h in erased and _aware(created) <= erased[h] + clock_skew]
    if doomed:
        async with engine.begin() as conn:
            await delete_removed(conn, select(Prediction.id).where(Prediction.id.in_(doomed)))
        log.info("prediction log: dropped %d spooled predictions of erased subjects", len(doomed))
    return len(doomed)


def _aware(value: datetime | str) -> datetime:
    """SQLite's aggregate returns the stored text, not the column's type: parse it as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
