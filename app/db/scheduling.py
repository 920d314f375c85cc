"""Periodic jobs that run once per time slot across every worker and replica.

Each worker wakes at the slot boundary (slots are aligned to the epoch, so all agree) and tries
to insert the slot's ``scheduled_run`` row; the primary key lets exactly one insert win, on
SQLite and Postgres alike, with no lock held while the job runs. The winner runs the job and
records how it ended; the others can wait for that record and reuse its result.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.session import read_only, unit_of_work
from app.db.tables import ScheduledRun

_UNAVAILABLE = "the job schedule is unavailable"

# Slot records are kept this long (to see who ran what), then the winner of a later slot deletes them.
KEEP_SLOTS_FOR = timedelta(days=7)


def slot_start(now: float, interval_s: float) -> float:
    """The start (epoch seconds) of the slot holding ``now``."""
    return math.floor(now / interval_s) * interval_s


async def sleep_until_next_slot(interval_s: float) -> datetime:
    """Sleep to the next slot boundary and return that slot's start."""
    now = time.time()
    start = slot_start(now, interval_s) + interval_s
    await asyncio.sleep(max(0.0, start - now))
    return datetime.fromtimestamp(start, UTC)


@dataclass(frozen=True)
class SlotRecord:
    claimed_by: str
    finished: bool
    outcome: str | None
    report_id: str | None


class SlotClaims:
    def __init__(self, *, engine: AsyncEngine, worker_id: str) -> None:
        self._engine = engine
        self.worker_id = worker_id

    async def claim(self, job: str, slot: datetime) -> bool:
        """True for the one caller whose insert created the slot's row."""
        try:
            async with unit_of_work(self._engine, _UNAVAILABLE) as conn:
                await conn.execute(insert(ScheduledRun).values(
                    job=job, slot=slot, claimed_by=self.worker_id, claimed_at=datetime.now(UTC)))
        except IntegrityError:  # another worker's insert won
            return False
        return True

    async def finish(self, job: str, slot: datetime, outcome: str, report_id: str | None) -> None:
        """Record how the slot's run ended, and forget the job's slots older than a week."""
        async with unit_of_work(self._engine, _UNAVAILABLE) as conn:
            await conn.execute(
                update(ScheduledRun)
                .where(ScheduledRun.job == job, ScheduledRun.slot == slot)
                .values(finished_at=datetime.now(UTC), outcome=outcome, report_id=report_id)
            )
            await conn.execute(delete(ScheduledRun).where(
                ScheduledRun.job == job, ScheduledRun.slot < slot - KEEP_SLOTS_FOR))

    async def get(self, job: str, slot: datetime) -> SlotRecord | None:
        t = ScheduledRun.__table__
        stmt = select(t.c.claimed_by, t.c.finished_at, t.c.outcome, t.c.report_id).where(
            t.c.job == job, t.c.slot == slot)
        async with read_only(self._engine, _UNAVAILABLE) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return SlotRecord(row.claimed_by, row.finished_at is not None, row.outcome, row.report_id)

    async def wait_finished(self, job: str, slot: datetime, timeout_s: float,
                            poll_s: float = 1.0) -> SlotRecord | None:
        """The slot's record once its winner has finished, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self.get(job, slot)
            if record is not None and record.finished:
                return record
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
