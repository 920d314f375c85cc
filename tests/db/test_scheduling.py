"""Slot claims on the real databases: one winner per slot, the record its followers wait for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.scheduling import KEEP_SLOTS_FOR, SlotClaims, slot_start


def test_slots_are_aligned_to_the_epoch():
    assert slot_start(7205.3, 3600) == 7200 and slot_start(7200.0, 3600) == 7200
    assert slot_start(10.26, 0.5) == 10.0


async def test_one_claim_wins_each_slot_and_followers_see_its_outcome(db_url):
    await upgrade(db_url)
    engines = [create_engine(db_url) for _ in range(4)]
    try:
        claims = [SlotClaims(engine=e, worker_id=f"worker-{i}") for i, e in enumerate(engines)]
        slot = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
        won = await asyncio.gather(*(c.claim("drift-check", slot) for c in claims))
        assert sorted(won) == [False, False, False, True]
        winner = claims[won.index(True)]
        assert await claims[0].wait_finished("drift-check", slot, timeout_s=0.2, poll_s=0.05) is None
        await winner.finish("drift-check", slot, "ok", "9a3c0f8e-0000-4000-8000-000000000001")
        record = await claims[0].wait_finished("drift-check", slot, timeout_s=5, poll_s=0.05)
        assert record is not None and record.claimed_by == winner.worker_id
        assert (record.outcome, record.report_id) == ("ok", "9a3c0f8e-0000-4000-8000-000000000001")
        # Another job, or the next slot, is a separate claim.
        assert await claims[1].claim("other-job", slot)
        later = slot + KEEP_SLOTS_FOR * 2
        assert await claims[2].claim("drift-check", later)
        await claims[2].finish("drift-check", later, "skipped", None)
        assert await claims[3].get("drift-check", slot) is None  # older than a week: forgotten
        assert await claims[3].get("other-job", slot) is not None
    finally:
        for engine in engines:
            await engine.dispose()
