"""``future-skills spool status | drain`` and ``db purge`` as real commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from app.db.dialect import ingest_ignoring_duplicates
from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from app.prediction_log.records import decode, encode
from app.prediction_log.segments import create_segment, today
from tests.prediction_log.test_spool import make_record
from tests.support.dbcheck import stored_ids

CLI = [sys.executable, "-m", "app.cli"]


def _env(tmp_path: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FS_", "DATABASE_URL"))}
    return env | {"FS_DATA_DIR": str(tmp_path), "DATABASE_URL": db_url, "MLFLOW_DISABLE_TELEMETRY": "true"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def _orphan(spool: Path, worker: str, lines: list[bytes]) -> Path:
    """A segment as a dead worker leaves it (written, then the lock let go)."""
    spool.mkdir(parents=True, exist_ok=True)
    segment = create_segment(spool, worker, today(), sync=False)
    segment.write(b"".join(lines), sync=False)
    segment.release()
    return segment.path


async def test_spool_status_and_drain_are_replay_safe(tmp_path, pg_url):
    env = _env(tmp_path, pg_url)
    lines = [encode(make_record()) for _ in range(120)]
    path = _orphan(tmp_path / "spool", "dead1", lines)
    # Written by its worker before it died, not yet deleted from the segment: not pending.
    engine = create_engine(pg_url)
    try:
        await ingest_ignoring_duplicates(engine, Prediction.__table__, [decode(x) for x in lines[:50]])
    finally:
        await engine.dispose()

    status = _run(["spool", "status"], env)
    assert status.returncode == 0, status.stderr
    assert path.name in status.stdout and "orphan" in status.stdout
    assert "120 records, 70 pending (not yet in the database)" in status.stdout, status.stdout
    assert "0 dead letters" in status.stdout

    drain = _run(["spool", "drain"], env)
    assert drain.returncode == 0, drain.stderr
    assert "drained 120 records from 1 segments" in drain.stderr
    assert not path.exists()

    _orphan(tmp_path / "spool", "dead1", lines[:50])  # the same rows replayed: no duplicates
    assert _run(["spool", "drain"], env).returncode == 0
    total, per_id = await stored_ids(pg_url)
    assert total == 120 and set(per_id.values()) == {1}


async def test_spool_drain_keeps_segments_when_the_database_is_down(tmp_path):
    env = _env(tmp_path, "postgresql://postgres@127.0.0.1:1/nowhere")
    path = _orphan(tmp_path / "spool", "dead2", [encode(make_record())])
    drain = _run(["spool", "drain"], env)
    assert drain.returncode == 1 and "segments kept" in drain.stderr
    assert path.exists()
    status = _run(["spool", "status"], env)
    assert status.returncode == 0 and "pending unknown: the database is unreachable" in status.stdout


async def test_db_purge_deletes_only_old_rows(tmp_path, pg_url):
    now = datetime.now(UTC)
    old = [make_record(created_at=now - timedelta(days=100)).as_row() for _ in range(5)]
    new = [make_record(created_at=now - timedelta(days=10)).as_row() for _ in range(3)]
    engine = create_engine(pg_url)
    try:
        await ingest_ignoring_duplicates(engine, Prediction.__table__, old + new)
        async with engine.begin() as conn:
            await conn.execute(insert(PredictionFeedback), [
                {"id": uuid.uuid4(), "prediction_id": r["id"], "actual_level": "LOW", "created_at": now}
                for r in (old[0], new[0])
            ])
    finally:
        await engine.dispose()
    env = _env(tmp_path, pg_url)
    assert _run(["db", "purge", "--older-than", "ninety"], env).returncode != 0
    purge = _run(["db", "purge", "--older-than", "90d", "--force"], env)  # below the 180d minimum
    assert purge.returncode == 0, purge.stderr
    assert "deleted 5 predictions, 1 feedback rows, 0 reviews and 0 explanations" in purge.stderr
    _, per_id = await stored_ids(pg_url)
    assert set(per_id) == {str(r["id"]) for r in new}
