"""Operator commands on the spool: what is in it, and drain what dead workers left behind."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import SpoolSettings
from app.db.dialect import ingest_ignoring_duplicates
from app.db.tables import Prediction
from app.services.records import decode, record_id
from app.services.spool import adopt, orphan_paths


@dataclass
class DrainReport:
    segments: int = 0
    rows: int = 0
    live_skipped: int = 0
    damaged: int = 0


async def drain_orphans(engine: AsyncEngine, directory: Path, settings: SpoolSettings) -> DrainReport:
    """Write every segment no live worker holds into the database, then delete it.

    Segments held by a running worker are left to it. A failed write keeps the segment (and
    raises): running the command again is safe, rows already stored are skipped.
    """
    report = DrainReport()
    if not directory.exists():
        return report
    for path in await asyncio.to_thread(orphan_paths, directory, set()):
        adopted = await asyncio.to_thread(adopt, path, directory / "quarantine", record_id)
        if adopted is None:
            report.live_skipped += 1
            continue
        try:
            rows = [decode(line) for line in adopted.lines]
            size = settings.drain_batch_size
            for start in range(0, len(rows), size):
                await ingest_ignoring_duplicates(
                    engine, Prediction.__table__, rows[start : start + size], settings.ingest_method
                )
        except BaseException:
            adopted.segment.release()
            raise
        adopted.segment.retire()
        report.segments += 1
        report.rows += len(rows)
        report.damaged += adopted.damaged
    return report
