"""``db purge`` keeps the minimum retention unless forced and takes everything attached along;
``db erase-subject`` removes exactly one subject's records, audits it without the raw id, and
the drainer drops that subject's records still in a spool."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from app.cli.main import app as cli_app
from app.config import Settings
from app.db.engine import create_engine
from app.db.tables import (
    Prediction,
    PredictionExplanation,
    PredictionFeedback,
    PredictionReview,
    SubjectErasure,
)
from app.prediction_log.erasure import pseudonym
from app.prediction_log.ingest import LogSink
from app.prediction_log.pending import PendingRecord
from app.prediction_log.records import PREDICTION, encode
from tests.prediction_log.test_spool import make_record

RAW_ID = "employee-4711@example.org"
OTHER_ID = "employee-0815@example.org"
KEY = Settings().privacy.subject_hmac_key.get_secret_value().encode()  # what the CLI uses here
TABLES = (Prediction, PredictionFeedback, PredictionReview, PredictionExplanation)


def cli(tmp_path: Path, db_url: str, *args: str, code: int = 0, stdin: str | None = None) -> str:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {"FS_DATA_DIR": str(tmp_path), "DATABASE_URL": db_url}
    try:
        result = CliRunner().invoke(cli_app, list(args), env=env, input=stdin)
    finally:
        root.handlers, root.level = handlers, level
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


async def _decisions(db_url: str, subject: str | None, ages_days: list[float]) -> list[uuid.UUID]:
    """Predictions about ``subject`` made ``ages_days`` ago, each with feedback, a review and an
    explanation; their ids."""
    now = datetime.now(UTC)
    subject_hash = pseudonym(KEY, subject) if subject else None
    records = [make_record(created_at=now - timedelta(days=d), subject_hash=subject_hash).as_row()
               for d in ages_days]
    for row in records:
        row.pop("needs_review", None)  # the table's default
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Prediction), records)
            for row in records:
                pid = row["id"]
                await conn.execute(insert(PredictionFeedback).values(
                    id=uuid.uuid4(), prediction_id=pid, actual_level="LOW", created_at=now))
                await conn.execute(insert(PredictionReview).values(
                    id=uuid.uuid4(), prediction_id=pid, created_at=now, reviewer="rita",
                    decision="override", level="LOW", reason="knows the team"))
                await conn.execute(insert(PredictionExplanation).values(
                    prediction_id=pid, created_at=now, model_name="m", model_version="1",
                    method="tree_shap", document={"base_values": {}}))
    finally:
        await engine.dispose()
    return [row["id"] for row in records]


async def _remaining(db_url: str) -> dict[str, set[uuid.UUID]]:
    """Per table, the prediction ids still referenced."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            out = {"prediction": set((await conn.execute(select(Prediction.id))).scalars())}
            for table in TABLES[1:]:
                ids = (await conn.execute(select(table.prediction_id))).scalars()
                out[table.__tablename__] = set(ids)
            return out
    finally:
        await engine.dispose()


async def _erasures(db_url: str) -> list[dict]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(SubjectErasure.__table__).order_by(SubjectErasure.created_at))
            return [dict(r) for r in rows.mappings()]
    finally:
        await engine.dispose()


async def test_purge_keeps_the_minimum_retention_unless_forced(tmp_path, pg_url):
    # Postgres only: the deletes are the erasure's, which runs on both databases below.
    db_url = pg_url
    young = await _decisions(db_url, None, [100, 120])
    old = await _decisions(db_url, None, [200])

    refused = await asyncio.to_thread(cli, tmp_path, db_url, "db", "purge", "--older-than", "90d", code=2)
    assert "FS_RETENTION_MIN_AGE" in refused and "--force" in refused
    assert (await _remaining(db_url))["prediction"] == set(young + old)
    dry = await asyncio.to_thread(cli, tmp_path, db_url, "db", "purge", "--older-than", "90d", "--dry-run")
    assert "would be refused" in dry and "would delete (dry run) 3 predictions" in dry

    purged = await asyncio.to_thread(cli, tmp_path, db_url, "db", "purge", "--older-than", "190d")
    assert "deleted 1 predictions, 1 feedback rows, 1 reviews and 1 explanations" in purged
    left = await _remaining(db_url)
    assert all(ids == set(young) for ids in left.values()), left

    forced = await asyncio.to_thread(cli, tmp_path, db_url, "db", "purge", "--older-than", "110d",
                                     "--force")
    assert "--force" in forced and "FS_RETENTION_MIN_AGE=180d" in forced
    assert "deleted 1 predictions, 1 feedback rows, 1 reviews and 1 explanations" in forced
    assert (await _remaining(db_url))["prediction"] == {young[0]}


async def test_erase_subject_removes_exactly_that_subject_and_audits_without_the_raw_id(
    tmp_path, db_url
):
    theirs = await _decisions(db_url, RAW_ID, [1, 30, 400])
    others = await _decisions(db_url, OTHER_ID, [1]) + await _decisions(db_url, None, [2])
    hashed = pseudonym(KEY, RAW_ID)

    dry = await asyncio.to_thread(cli, tmp_path, db_url, "db", "erase-subject", RAW_ID, "--dry-run")
    assert "would remove" in dry and (await _erasures(db_url)) == []
    assert (await _remaining(db_url))["prediction"] == set(theirs + others)
    # The raw id from stdin, as an operator keeps it out of the shell history.
    out = await asyncio.to_thread(cli, tmp_path, db_url, "db", "erase-subject", "-", "--actor", "dpo",
                                  "--yes", stdin=RAW_ID + "\n")
    assert hashed in out and RAW_ID not in out and RAW_ID not in dry
    left = await _remaining(db_url)
    assert all(ids == set(others) for ids in left.values()), left

    [erasure] = await _erasures(db_url)
    assert (erasure["actor"], erasure["subject_hash"]) == ("dpo", hashed)
    assert erasure["removed"] == {"prediction": 3, "prediction_feedback": 3, "prediction_review": 3,
                                  "prediction_explanation": 3, "shadow_prediction": 0}
    assert RAW_ID not in repr(erasure)

    # A record of the subject made before the erasure, still in a replica's spool, is dropped
    # when it is drained; one made after it (the subject scored again) is kept.
    before = make_record(created_at=erasure["created_at"] - timedelta(seconds=5), subject_hash=hashed)
    after = make_record(created_at=erasure["created_at"] + timedelta(seconds=5), subject_hash=hashed)
    stranger = make_record(created_at=erasure["created_at"] - timedelta(seconds=5),
                           subject_hash=pseudonym(KEY, OTHER_ID))
    engine = create_engine(db_url)
    try:
        sink = LogSink(engine=engine, method="copy", clock_skew_s=1.0)
        records = [PendingRecord(id=r.id, kind=PREDICTION, line=encode(r), segment=None, at=0.0,
                                 row=r.as_row()) for r in (before, after, stranger)]
        settled = await sink.settle(records)
        assert len(settled.written) == 3 and not settled.refused  # acknowledged: off the spool
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(Prediction.id).where(
                Prediction.id.in_([before.id, after.id, stranger.id])))).scalars())
            total = await conn.scalar(select(func.count()).select_from(Prediction))
    finally:
        await engine.dispose()
    assert stored == {after.id, stranger.id}
    assert total == len(others) + 2
