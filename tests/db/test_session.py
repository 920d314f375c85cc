"""app/db/session.py: outages become DatabaseUnavailable, answers from a working database do not."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from app.db.dialect import lock_until_commit
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.session import read_only, unit_of_work
from app.db.tables import ScheduledRun
from app.errors import DatabaseUnavailable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once the socket is closed


def _slot_row(job: str) -> dict[str, object]:
    return {"job": job, "slot": datetime(2026, 1, 1, tzinfo=UTC), "claimed_by": "w"}


@pytest.mark.parametrize("helper", [unit_of_work, read_only])
async def test_an_unreachable_database_is_database_unavailable(helper) -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/none")
    try:
        with pytest.raises(DatabaseUnavailable, match="the schedule is down") as caught:
            async with helper(engine, "the schedule is down") as conn:
                await conn.execute(select(1))
        assert caught.value.__cause__ is not None  # the driver's error is kept for the log
    finally:
        await engine.dispose()


async def test_unit_of_work_commits_and_rolls_back(db_url: str) -> None:
    engine = create_engine(db_url)
    job = f"job-{uuid.uuid4().hex[:8]}"
    count = select(func.count()).select_from(ScheduledRun).where(ScheduledRun.job == job)
    try:
        with pytest.raises(RuntimeError):
            async with unit_of_work(engine) as conn:
                await conn.execute(insert(ScheduledRun).values(**_slot_row(job)))
                raise RuntimeError("not a database error: passes through, after a rollback")
        async with read_only(engine) as conn:
            assert await conn.scalar(count) == 0
        async with unit_of_work(engine) as conn:
            await conn.execute(insert(ScheduledRun).values(**_slot_row(job)))
        async with read_only(engine) as conn:
            assert await conn.scalar(count) == 1
        # A constraint refusal is the database answering: not an outage.
        with pytest.raises(IntegrityError):
            async with unit_of_work(engine) as conn:
                await conn.execute(insert(ScheduledRun).values(**_slot_row(job)))
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_lock_until_commit_serialises_transactions_on_one_key(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        async with unit_of_work(engine) as first:
            await lock_until_commit(first, "model_promotion:m")

            async def second() -> None:
                async with unit_of_work(engine) as conn:
                    await lock_until_commit(conn, "model_promotion:m")

            async def other_key() -> None:
                async with unit_of_work(engine) as conn:
                    await lock_until_commit(conn, "model_promotion:other")

            await asyncio.wait_for(other_key(), 5)  # another key is not held up
            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the same key must wait for the first transaction"
        await asyncio.wait_for(waiting, 5)  # released at commit
    finally:
        await engine.dispose()


async def test_sqlite_files_opened_together_all_end_up_in_wal(tmp_path) -> None:
    """Connections that open a rollback-journal file at once race to switch it to WAL: one wins,
    none fails (the losers were refused with 'database is locked' before)."""
    for attempt in range(20):
        path = tmp_path / f"race-{attempt}.db"
        setup = sqlite3.connect(path)
        setup.execute("CREATE TABLE scheduled_probe (x INTEGER)")
        setup.commit()
        setup.close()
        engines = [create_engine(f"sqlite+aiosqlite:///{path}") for _ in range(6)]
        try:
            async def write(engine) -> None:
                async with unit_of_work(engine, "down") as conn:
                    await conn.exec_driver_sql("INSERT INTO scheduled_probe VALUES (1)")

            await asyncio.gather(*(write(engine) for engine in engines))
            async with read_only(engines[0], "down") as conn:
                mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
                rows = (await conn.exec_driver_sql("SELECT count(*) FROM scheduled_probe")).scalar()
            assert (str(mode).lower(), rows) == ("wal", 6)
        finally:
            for engine in engines:
                await engine.dispose()


async def test_migrating_a_new_sqlite_file_leaves_it_in_wal(tmp_path) -> None:
    path = tmp_path / "fresh.db"
    await upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
