"""A record the database refuses is dead-lettered; it never holds back the records after it.

Real databases: SQLite refuses less than Postgres (no varchar lengths, NUL is stored), so each
database gets the refusals that apply to it; a missing NOT NULL value is refused by both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from app.config import SpoolSettings
from app.db.dialect import ingest_ignoring_duplicates
from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from app.metrics import ServiceMetrics
from app.prediction_log.dead_letters import DeadLetterStore
from app.prediction_log.log import PredictionLog
from app.prediction_log.records import FeedbackRecord, encode
from app.prediction_log.segments import create_segment, today
from tests.prediction_log.test_spool import make_record
from tests.support.dbcheck import stored_ids


def refused_records(url: str) -> list:
    """Records this database refuses (each for another reason)."""
    bad = [make_record(level=None)]  # NOT NULL, on both
    if url.startswith("postgresql"):
        bad += [
            make_record(request_id="nul\x00inside"),  # text refuses U+0000
            make_record(features={"job_role": "Data\x00Engineer"}),  # so does JSONB
            make_record(request_id="x" * 101),  # varchar(100)
        ]
    return bad


def orphan(spool: Path, lines: list[bytes]) -> Path:
    """A segment as a dead worker leaves it: written, then its lock let go."""
    spool.mkdir(parents=True, exist_ok=True)
    segment = create_segment(spool, "dead", today(), sync=False)
    segment.write(b"".join(lines), sync=False)
    segment.release()
    return segment.path


async def _settled(log: PredictionLog, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while log.pending_count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert log.pending_count == 0, "the log is wedged"


async def test_refused_records_are_dead_lettered_and_never_hold_back_later_ones(tmp_path, db_url):
    spool = tmp_path / "spool"
    # Put straight into a segment (as if it got there some other way) with good records around.
    adopted_bad = refused_records(db_url)
    adopted_good = [make_record() for _ in range(40)]
    feedback = FeedbackRecord(uuid.uuid4(), adopted_good[-1].id, "LOW", datetime.now(UTC))
    segment = orphan(spool, [encode(r) for r in [adopted_good[0], *adopted_bad, feedback,
                                                 *adopted_good[1:]]])
    settings = SpoolSettings(dir=spool, durability="fsync", drain_interval_s=0.05, backoff_max_s=0.2)
    metrics = ServiceMetrics()
    engine = create_engine(db_url)
    log = PredictionLog(engine=engine, settings=settings, metrics=metrics, directory=spool)
    await log.start()
    try:
        # And through the live path: refused records in the middle of requests.
        live_bad = refused_records(db_url)
        live_good = [make_record() for _ in range(30)]
        await log.record(live_good[:10] + live_bad[:1])
        await log.record(live_bad[1:] + live_good[10:20])
        await _settled(log)
        await log.record(live_good[20:])  # after the refusals: written as promptly as ever
        await _settled(log, timeout=5.0)
    finally:
        await log.stop()
        await engine.dispose()

    total, per_id = await stored_ids(db_url)
    good_ids = {str(r.id) for r in adopted_good + live_good}
    bad = adopted_bad + live_bad
    assert set(per_id) == good_ids and total == len(good_ids)
    assert not segment.exists(), "the adopted segment was not retired"
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:  # feedback adopted with it, after its prediction
            assert (await conn.execute(select(PredictionFeedback.id))).scalars().all() == [feedback.id]
    finally:
        await engine.dispose()

    letters = {d.id: d for d in DeadLetterStore(spool).list()}
    assert set(letters) == {str(r.id) for r in bad}
    for rec in bad:
        letter = letters[str(rec.id)]
        assert letter.kind == "prediction" and letter.line == encode(rec).decode()
        assert letter.reason and "Traceback" not in letter.reason and len(letter.reason) <= 300
        datetime.fromisoformat(letter.at)
    if db_url.startswith("postgresql"):
        reasons = " ".join(d.reason for d in letters.values())
        # U+0000 is refused as the line is parsed (COPY stages each line as jsonb), wherever it is.
        assert "unsupported Unicode escape sequence" in reasons
        assert "character varying(100)" in reasons
    sample = metrics.registry.get_sample_value
    assert sample("fs_spool_dead_letters_total", {"kind": "prediction"}) == len(bad)
    assert sample("fs_spool_dead_letters_on_disk") == len(bad)
    assert sample("fs_prediction_log_written_total") == len(good_ids)


def _cli(args: list[str], tmp_path: Path, db_url: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "DATABASE_URL"))}
    base |= {"FS_DATA_DIR": str(tmp_path), "DATABASE_URL": db_url, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=base | env,
                          capture_output=True, text=True, timeout=120)


async def test_spool_drain_dead_letters_and_the_cli_replays_or_discards_them(tmp_path, pg_url):
    """``spool drain`` of an orphaned segment isolates refused records; replay and discard."""
    spool = tmp_path / "spool"
    good = [make_record() for _ in range(20)]
    [bad] = [make_record(request_id="nul\x00inside")]
    late_prediction = make_record()  # its feedback arrives before it does
    stale = datetime.now(UTC) - timedelta(hours=1)
    feedback = FeedbackRecord(uuid.uuid4(), late_prediction.id, "HIGH", stale)
    fresh = FeedbackRecord(uuid.uuid4(), uuid.uuid4(), "LOW", datetime.now(UTC))  # may still come
    orphan(spool, [encode(r) for r in [good[0], bad, feedback, fresh, *good[1:]]])
    grace = {"FS_SPOOL_FEEDBACK_GRACE_S": "60"}  # the first feedback is an hour old: past it

    drain = _cli(["spool", "drain"], tmp_path, pg_url, **grace)
    assert drain.returncode == 0, drain.stderr
    assert "drained 20 records from 1 segments" in drain.stderr
    assert "2 refused records dead-lettered" in drain.stderr
    assert "1 feedback records still waiting for their prediction" in drain.stderr
    status = _cli(["spool", "status"], tmp_path, pg_url)
    assert status.returncode == 0, status.stderr
    assert "2 dead letters (1 feedback, 1 prediction)" in status.stdout, status.stdout
    # Only the waiting feedback is kept, in a segment of its own that the next drain adopts.
    assert "1 segments, 1 records, 1 pending" in status.stdout, status.stdout

    listed = _cli(["spool", "dead-letters", "--json"], tmp_path, pg_url)
    entries = {e["id"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {str(bad.id), str(feedback.id)}
    assert entries[str(feedback.id)]["reason"] == "no prediction with this id"
    assert "unsupported Unicode escape sequence" in entries[str(bad.id)]["reason"]
    assert entries[str(bad.id)]["line"] == encode(bad).decode()

    # The prediction turns up after all: replaying writes the feedback; the NUL stays refused.
    engine = create_engine(pg_url)
    try:
        await ingest_ignoring_duplicates(engine, Prediction.__table__, [late_prediction.as_row()])
    finally:
        await engine.dispose()
    replay = _cli(["spool", "replay", "--all"], tmp_path, pg_url)
    assert replay.returncode == 1 and "replayed 1 records; 1 still refused" in replay.stderr
    assert [d.id for d in DeadLetterStore(spool).list()] == [str(bad.id)]
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(PredictionFeedback.id))).scalars().all()
    finally:
        await engine.dispose()
    assert stored == [feedback.id]
    assert _cli(["spool", "discard"], tmp_path, pg_url).returncode == 2  # ids or --all
    discard = _cli(["spool", "discard", str(bad.id)], tmp_path, pg_url)
    assert discard.returncode == 0 and "discarded 1 dead letters" in discard.stderr
    assert DeadLetterStore(spool).list() == []


async def test_a_missing_table_is_not_a_refusal_records_wait_for_it(tmp_path, db_url):
    """A schema problem (here: no ``prediction`` table) means "not now", never "dead-letter"."""
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE prediction RENAME TO prediction_away"))
    spool = tmp_path / "spool"
    settings = SpoolSettings(dir=spool, drain_interval_s=0.05, backoff_initial_s=0.05,
                             backoff_max_s=0.2)
    metrics = ServiceMetrics()
    log = PredictionLog(engine=engine, settings=settings, metrics=metrics, directory=spool)
    await log.start()
    try:
        records = [make_record() for _ in range(5)]
        await log.record(records)
        await asyncio.sleep(1.0)  # several failed attempts
        assert metrics.registry.get_sample_value("fs_spool_flush_failures_total") >= 2
        assert log.pending_count == 5 and DeadLetterStore(spool).list() == []
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE prediction_away RENAME TO prediction"))
        await _settled(log)
    finally:
        await log.stop()
        await engine.dispose()
    _total, per_id = await stored_ids(db_url)
    assert set(per_id) == {str(r.id) for r in records} and DeadLetterStore(spool).list() == []
