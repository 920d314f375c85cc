"""The spool on its own: group commit, orphan adoption under flock, damaged files, idempotent replay."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from app.config import SpoolSettings
from app.db.dialect import ingest_ignoring_duplicates
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.tables import Prediction
from app.metrics import ServiceMetrics
from app.prediction_log.log import PredictionLog
from app.prediction_log.records import PredictionRecord, decode, encode, record_id
from app.prediction_log.segments import SEGMENT_GLOB, SpoolFiles, adopt, create_segment, today
from app.prediction_log.writer import SpoolWriter


def make_record(**overrides) -> PredictionRecord:
    fields = dict(
        id=uuid.uuid4(), created_at=datetime.now(UTC), model_name="m", model_version="1",
        features={"job_role": "Data Engineer", "horizon_years": 3}, level="HIGH",
        probabilities={"LOW": 0.1, "MEDIUM": 0.2, "HIGH": 0.7}, score=80.0, latency_ms=5.0,
        request_id="r1", protocol="v1", subject_hash=None,
    )
    fields.update(overrides)
    return PredictionRecord(**fields)


def test_record_round_trips_through_a_line():
    rec = make_record()
    assert decode(encode(rec)) == rec.as_row()


async def test_group_commit_shares_fsyncs(tmp_path):
    files = SpoolFiles(directory=tmp_path, worker="w1", sync=True, segment_max_bytes=1 << 20)
    files.open()
    writer = SpoolWriter(files=files, durability="fsync", group_commit_wait_ms=2.0)
    writer.start()
    records = [make_record() for _ in range(300)]
    try:
        await asyncio.gather(*(writer.append(encode(r)) for r in records))
    finally:
        await writer.stop()
    lines = files.active.path.read_bytes().splitlines(keepends=True)
    assert sorted(record_id(line) for line in lines) == sorted(r.id for r in records)
    assert 1 <= writer.syncs < 300 / 4, writer.syncs  # concurrent appends share fsyncs


_HOLD = """
import sys, time
from pathlib import Path
from app.prediction_log.segments import create_segment
seg = create_segment(Path(sys.argv[1]), "live", sys.argv[2], sync=False)
seg.write(sys.argv[3].encode(), sync=False)
print(seg.path, flush=True)
time.sleep(60)
"""


def test_a_live_workers_segment_is_never_adopted(tmp_path):
    line = encode(make_record()).decode()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), today(), line],
                            stdout=subprocess.PIPE, text=True)
    try:
        path = tmp_path / proc.stdout.readline().strip().rsplit("/", 1)[-1]
        assert path.exists()
        assert adopt(path, tmp_path / "q", record_id) is None  # its owner is alive
    finally:
        proc.kill()
        proc.wait(10)
    adopted = adopt(path, tmp_path / "q", record_id)  # the owner is dead now
    assert adopted is not None and [line.encode()] == adopted.lines
    adopted.segment.retire()
    assert not path.exists()


def test_a_reused_worker_name_never_overwrites_a_segment(tmp_path):
    first = create_segment(tmp_path, "w1", "20261127", sync=False)
    second = create_segment(tmp_path, "w1", "20261127", sync=False)
    assert first.path.name == "predictions-20261127-w1.jsonl"
    assert second.path.name == "predictions-20261127-w1-1.jsonl"
    first.release()
    second.release()


def test_damaged_lines_are_quarantined_and_a_torn_tail_ignored(tmp_path):
    good = [encode(make_record()) for _ in range(3)]
    path = tmp_path / f"predictions-{today()}-dead.jsonl"
    path.write_bytes(good[0] + b"{not json\n" + good[1] + good[2] + good[0][:40])
    adopted = adopt(path, tmp_path / "quarantine", record_id)
    assert adopted.lines == good
    assert adopted.damaged == 1 and adopted.torn_tail
    assert (tmp_path / "quarantine" / path.name).read_bytes() == b"{not json\n"
    adopted.segment.release()


async def test_replaying_rows_twice_creates_no_duplicate(pg_url, tmp_path):
    rows = [make_record().as_row() for _ in range(250)]
    for url in (pg_url, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"):
        await upgrade(url)
        engine = create_engine(url)
        try:
            for method in ("copy", "insert", "copy"):
                await ingest_ignoring_duplicates(engine, Prediction.__table__, rows, method)
            await ingest_ignoring_duplicates(engine, Prediction.__table__, rows + rows[:10], "insert")
            async with engine.connect() as conn:
                assert await conn.scalar(select(func.count()).select_from(Prediction)) == 250
                stored = (await conn.execute(select(Prediction.__table__))).mappings().all()
        finally:
            await engine.dispose()
        by_id = {r["id"]: r for r in stored}
        assert by_id[rows[0]["id"]]["features"] == rows[0]["features"]


async def test_segments_rotate_and_are_deleted_once_drained(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    engine = create_engine(url)
    settings = SpoolSettings(segment_max_bytes=2048, drain_interval_s=0.05, drain_batch_size=7)
    log = PredictionLog(engine=engine, settings=settings, metrics=ServiceMetrics(),
                        directory=tmp_path / "spool")
    await log.start()
    try:
        for _ in range(40):
            await log.record([make_record(), make_record()])
        # Several segments were written (rotation by size) ...
        assert log.files.created >= 5
        deadline = asyncio.get_running_loop().time() + 10
        while log.pending_count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert log.pending_count == 0
        # ... and every closed one is gone once its rows are committed; only the active one is left.
        assert [p.name for p in (tmp_path / "spool").glob(SEGMENT_GLOB)] == [log.files.active.path.name]
    finally:
        await log.stop()
    assert list((tmp_path / "spool").glob(SEGMENT_GLOB)) == []
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Prediction)) == 80
    await engine.dispose()
