"""Operator commands on the spool: what is in it (and really pending), draining what dead
workers left behind, and the dead-letter store (list, replay, discard)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import SpoolSettings
from app.prediction_log.dead_letters import DeadLetter, DeadLetterStore
from app.prediction_log.ingest import NO_PREDICTION, LogSink
from app.prediction_log.peers import scan
from app.prediction_log.pending import PendingRecord
from app.prediction_log.records import FEEDBACK, PREDICTION, decode_entry, record_id
from app.prediction_log.segments import adopt, create_segment, describe, orphan_paths, split_lines, today


def _pending(kind: str, row: dict[str, Any], line: bytes) -> PendingRecord:
    # Here feedback's grace period counts from its submission (no memory of earlier looks).
    return PendingRecord(row["id"], kind, line, None, time.monotonic(), row.get("prediction_id"),
                         created_at=row["created_at"])


@dataclass
class DrainReport:
    segments: int = 0
    rows: int = 0
    live_skipped: int = 0
    damaged: int = 0
    dead_lettered: int = 0
    waiting: int = 0  # feedback whose prediction may still arrive: kept in a new orphan segment


async def _settle_all(
    sink: LogSink, store: DeadLetterStore, records: list[PendingRecord], directory: Path,
    settings: SpoolSettings, exclude: set[Path],
) -> tuple[int, list[PendingRecord], int]:
    """Write records in batches; (rows written, feedback still waiting, records dead-lettered)."""
    written, waiting, dead = 0, [], 0
    size = settings.drain_batch_size
    for start in range(0, len(records), size):
        settled = await sink.settle(records[start : start + size])
        refused = list(settled.refused)
        if settled.unmatched:
            pids = {r.prediction_id for r in settled.unmatched if r.prediction_id is not None}
            alive = set((await asyncio.to_thread(scan, directory, exclude, pids)).predictions)
            alive |= await sink.existing(PREDICTION, list(pids - alive))
            cutoff = datetime.now(UTC).timestamp() - settings.feedback_grace_s
            for rec in settled.unmatched:
                created = rec.created_at.timestamp() if rec.created_at is not None else cutoff + 1
                if rec.prediction_id in alive or created > cutoff:
                    waiting.append(rec)
                else:
                    refused.append((rec, NO_PREDICTION))
        await asyncio.to_thread(
            store.put, [DeadLetter.of(r.id, r.kind, r.line, why) for r, why in refused]
        )
        written += len(settled.written)
        dead += len(refused)
    return written, waiting, dead


async def drain_orphans(engine: AsyncEngine, directory: Path, settings: SpoolSettings) -> DrainReport:
    """Write every segment no live worker holds into the database, then delete it.

    Segments held by a running worker are left to it. Records the database refuses go to the
    dead-letter store. A failed write (database down) keeps the segment and raises: running the
    command again is safe, rows already stored are skipped.
    """
    report = DrainReport()
    if not await asyncio.to_thread(directory.exists):
        return report
    sink, store = LogSink(engine=engine, method=settings.ingest_method), DeadLetterStore(directory)
    for path in await asyncio.to_thread(orphan_paths, directory, set()):
        adopted = await asyncio.to_thread(adopt, path, directory / "quarantine", record_id)
        if adopted is None:
            report.live_skipped += 1
            continue
        try:
            records = [_pending(*decode_entry(line), line) for line in adopted.lines]
            written, waiting, dead = await _settle_all(
                sink, store, records, directory, settings, {path}
            )
            if waiting:  # only they are kept, in a new segment the next drain (or a worker) adopts
                await asyncio.to_thread(_respool, directory, [r.line for r in waiting])
        except BaseException:
            adopted.segment.release()
            raise
        adopted.segment.retire()
        report.segments += 1
        report.rows += written
        report.damaged += adopted.damaged
        report.dead_lettered += dead
        report.waiting += len(waiting)
    return report


def _respool(directory: Path, lines: list[bytes]) -> None:
    segment = create_segment(directory, "cli", today(), sync=True)
    try:
        segment.write(b"".join(lines), sync=True)
    finally:
        segment.release()


# --- status ------------------------------------------------------------------------------------


@dataclass
class SegmentStatus:
    name: str
    size: int
    records: int
    live: bool
    pending: int | None = None  # not yet in the database; None when the database cannot be asked
    feedback: int = 0


@dataclass
class SpoolStatus:
    segments: list[SegmentStatus] = field(default_factory=list)
    database_reachable: bool = True
    dead_letters: dict[str, int] = field(default_factory=dict)  # kind -> count


def _segment_ids(path: Path) -> dict[str, list[uuid.UUID]]:
    ids: dict[str, list[uuid.UUID]] = {PREDICTION: [], FEEDBACK: []}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ids
    for line in split_lines(data)[0]:
        try:
            kind, row = decode_entry(line)
        except ValueError:
            continue  # damaged: quarantined when adopted; not a pending record
        ids[kind].append(row["id"])
    return ids


async def spool_status(engine: AsyncEngine, directory: Path) -> SpoolStatus:
    """Each segment with the records in it that are really pending (not yet in the database)."""
    status = SpoolStatus()
    sink = LogSink(engine=engine)
    for info in await asyncio.to_thread(describe, directory):
        ids = await asyncio.to_thread(_segment_ids, info.path)
        seg = SegmentStatus(info.path.name, info.size, info.lines, info.live,
                            feedback=len(ids[FEEDBACK]))
        if status.database_reachable:
            try:
                stored = sum([len(await sink.existing(k, v)) for k, v in ids.items() if v])
                seg.pending = sum(len(v) for v in ids.values()) - stored
            except Exception:  # reported as "unknown", with the reason printed by the caller
                status.database_reachable = False
        status.segments.append(seg)
    for letter in await asyncio.to_thread(DeadLetterStore(directory).list):
        status.dead_letters[letter.kind] = status.dead_letters.get(letter.kind, 0) + 1
    return status


# --- dead letters ------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    written: list[str] = field(default_factory=list)
    still_refused: list[tuple[str, str]] = field(default_factory=list)  # id, reason
    unknown: list[str] = field(default_factory=list)


async def replay(engine: AsyncEngine, directory: Path, settings: SpoolSettings,
                 ids: list[str] | None) -> ReplayReport:
    """Try to write dead letters again (all when ``ids`` is None); written ones are removed.

    Still refused stays, with the database's latest reason. Raises when the database is down.
    """
    store, report = DeadLetterStore(directory), ReplayReport()
    sink = LogSink(engine=engine, method=settings.ingest_method)
    letters = await asyncio.to_thread(store.list)
    if ids is not None:
        wanted = {str(uuid.UUID(i)) for i in ids}
        report.unknown = sorted(wanted - {d.id for d in letters})
        letters = [d for d in letters if d.id in wanted]
    records = [_pending(*decode_entry(d.line.encode()), d.line.encode()) for d in letters]
    if not records:
        return report
    settled = await sink.settle(records)
    refused = list(settled.refused) + [(r, NO_PREDICTION) for r in settled.unmatched]
    await asyncio.to_thread(store.put, [DeadLetter.of(r.id, r.kind, r.line, why) for r, why in refused])
    report.written = [str(r.id) for r in settled.written]
    report.still_refused = [(str(r.id), why) for r, why in refused]
    await asyncio.to_thread(store.remove, report.written)
    return report
