"""Writing spooled records to the database, telling "the database is down" from "it refuses this".

A batch that fails with an error of the data kind (a value Postgres cannot store, a constraint) is
bisected until the refused records are found; the others are written. A single refused record is
only given up on after a ``SELECT 1`` shows the database is reachable. Any other error (refused
connection, timeout, missing table or permission) means "not now": the caller keeps the whole
batch and retries with backoff. Writes skip ids already stored, so re-writing a half is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Table, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import (
    DATA_REFUSED_ERRORS,
    copy_lines_ignoring_duplicates,
    ingest_ignoring_duplicates,
    is_postgres,
)
from app.db.tables import Base, Prediction, PredictionFeedback
from app.prediction_log.erasure import drop_erased
from app.prediction_log.pending import PendingRecord
from app.prediction_log.records import FEEDBACK, PREDICTION, decode

log = logging.getLogger(__name__)

T = TypeVar("T")

_TABLES: dict[str, Table] = {
    PREDICTION: Base.metadata.tables[Prediction.__tablename__],
    FEEDBACK: Base.metadata.tables[PredictionFeedback.__tablename__],
}
NO_PREDICTION = "no prediction with this id"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return seen


def refusal(exc: BaseException) -> str | None:
    """The database's reason, short, when ``exc`` says it refuses the data; else None."""
    chain = _chain(exc)
    bind_failed = isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)
    if not bind_failed and not any(isinstance(e, DATA_REFUSED_ERRORS) for e in chain):
        return None
    root = chain[-1]
    lines = str(root).strip().splitlines()
    return f"{type(root).__name__}: {lines[0] if lines else ''}"[:300]


async def write_isolating(
    write: Callable[[list[T]], Awaitable[None]], items: list[T], probe: Callable[[], Awaitable[bool]]
) -> list[tuple[T, str]]:
    """Write ``items``; returns those the database refuses, with its reason. The rest are written.

    Raises the write's error when the database is unavailable (nothing is known to be refused).
    """
    if not items:
        return []
    try:
        await write(items)
        return []
    except Exception as exc:
        reason = refusal(exc)
        if reason is None:
            raise
        if len(items) == 1:
            if not await probe():  # a data error from a database we cannot reach: not proof
                raise
            return [(items[0], reason)]
    mid = len(items) // 2
    return await write_isolating(write, items[:mid], probe) + await write_isolating(
        write, items[mid:], probe
    )


@dataclass
class Settled:
    written: list[PendingRecord] = field(default_factory=list)
    refused: list[tuple[PendingRecord, str]] = field(default_factory=list)
    unmatched: list[PendingRecord] = field(default_factory=list)  # feedback without its prediction


class LogSink:
    """The prediction log's tables in one database."""

    def __init__(self, *, engine: AsyncEngine, method: str = "copy", clock_skew_s: float = 1.0) -> None:
        self.engine = engine
        self.method = method
        self.clock_skew = timedelta(seconds=clock_skew_s)  # of erasures vs other hosts' records
        self._copies_lines = is_postgres(engine) and method == "copy"

    async def write(self, kind: str, lines: Sequence[bytes]) -> None:
        if self._copies_lines:
            await copy_lines_ignoring_duplicates(self.engine, _TABLES[kind], lines)
            return
        rows = [decode(line) for line in lines]
        await ingest_ignoring_duplicates(self.engine, _TABLES[kind], rows, self.method)

    async def write_pending(self, kind: str, records: Sequence[PendingRecord]) -> None:
        """``write`` for buffered records. COPY on Postgres sends their spool lines as they are;
        the batched inserts take the row a record made by this worker carries, so only adopted
        lines are decoded (decoding every line was a sixth of the event loop's time at 100-row
        requests)."""
        if self._copies_lines:
            await copy_lines_ignoring_duplicates(self.engine, _TABLES[kind], [r.line for r in records])
            return
        rows = [r.row if r.row is not None else decode(r.line) for r in records]
        await ingest_ignoring_duplicates(self.engine, _TABLES[kind], rows, self.method)

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(5):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # any failure means "not reachable"; the caller says so
            log.warning("prediction log: database probe failed (%s)", type(exc).__name__)
            return False

    async def existing(self, kind: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` the table of ``kind`` holds."""
        table = _TABLES[kind]
        found: set[uuid.UUID] = set()
        unique = list(dict.fromkeys(ids))
        async with self.engine.connect() as conn:
            for start in range(0, len(unique), 1000):
                chunk = unique[start : start + 1000]
                result = await conn.execute(select(table.c.id).where(table.c.id.in_(chunk)))
                found.update(result.scalars())
        return found

    async def settle(self, records: list[PendingRecord]) -> Settled:
        """Write a batch: predictions first, then feedback whose prediction is now stored.

        Raises when the database is unavailable; then nothing is settled (writes were idempotent).
        """
        out = Settled()
        predictions = [r for r in records if r.kind == PREDICTION]
        feedback = [r for r in records if r.kind == FEEDBACK]
        out.refused += await write_isolating(
            lambda recs: self.write_pending(PREDICTION, recs), predictions, self.probe
        )
        # Subjects erased while these waited in a spool: their records go (app.prediction_log.erasure).
        refused_now = {id(r) for r, _ in out.refused}
        await drop_erased(self.engine, (r.row if r.row is not None else decode(r.line)
                                        for r in predictions if id(r) not in refused_now),
                          self.clock_skew)
        if feedback:
            known = await self.existing(
                PREDICTION, [r.prediction_id for r in feedback if r.prediction_id is not None]
            )
            matched = [r for r in feedback if r.prediction_id in known]
            out.unmatched = [r for r in feedback if r.prediction_id not in known]
            out.refused += await write_isolating(
                lambda recs: self.write_pending(FEEDBACK, recs), matched, self.probe
            )
        refused = {id(r) for r, _ in out.refused} | {id(r) for r in out.unmatched}
        out.written = [r for r in records if id(r) not in refused]
        return out
