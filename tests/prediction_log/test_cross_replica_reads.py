"""Read-after-write across replicas: two prediction logs with their own spools (two replicas'
disks) and one database. A prediction one replica answered a moment ago is found by the other,
which waits (bounded) for the first one's drain; an id that is old, from the future, or not a
UUIDv7 is unknown at once, without waiting."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from app.config import SpoolSettings
from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from app.metrics import ServiceMetrics
from app.prediction_log.feedback import FeedbackService
from app.prediction_log.ids import created_at, new_id, new_ids
from app.prediction_log.log import PredictionLog
from tests.prediction_log.test_dead_letters import _settled
from tests.prediction_log.test_spool import make_record


def test_ids_carry_their_creation_time():
    before = time.time()
    made = new_id()
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before - 0.001 <= created_at(made) <= time.time()
    assert created_at(new_id(at=1_700_000_000.123)) == 1_700_000_000.123
    assert created_at(uuid.uuid4()) is None
    assert len({new_id() for _ in range(10_000)}) == 10_000
    batch = new_ids(1000)  # the request path's batch form: the same ids, made faster
    assert len(set(batch)) == 1000
    for made in batch[:50]:
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert uuid.UUID(str(made)) == made and hash(uuid.UUID(str(made))) == hash(made)
        assert before - 0.001 <= created_at(made) <= time.time()


async def _stored(engine) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Prediction ids in the database, and the prediction ids that have feedback there."""
    async with engine.connect() as conn:
        predictions = set((await conn.execute(select(Prediction.id))).scalars())
        feedback = set((await conn.execute(select(PredictionFeedback.prediction_id))).scalars())
    return predictions, feedback


def _waits(metrics: ServiceMetrics) -> dict[str, float]:
    return {outcome: metrics.spool_read_waits.labels(outcome)._value.get()
            for outcome in ("found", "not_found")}


async def test_another_replica_reads_and_gives_feedback_before_the_drain(tmp_path, db_url):
    # Replica A drains slowly (a batch of 1000 or 1 s), so B asks before the row is there.
    a_settings = SpoolSettings(dir=tmp_path / "a", durability="os", drain_interval_s=1.0)
    b_settings = SpoolSettings(dir=tmp_path / "b", durability="os", read_wait_s=5.0)
    a_metrics, b_metrics = ServiceMetrics(), ServiceMetrics()
    a_engine, b_engine = create_engine(db_url), create_engine(db_url)
    a = PredictionLog(engine=a_engine, settings=a_settings, metrics=a_metrics, directory=tmp_path / "a")
    b = PredictionLog(engine=b_engine, settings=b_settings, metrics=b_metrics, directory=tmp_path / "b")
    await a.start()
    await b.start()
    try:
        answered = make_record(id=new_id())
        await a.record([answered])
        assert await _stored(b_engine) == (set(), set())  # still only on replica A's disk

        row = await b.get(answered.id)
        assert row is not None and row["id"] == answered.id and row["level"] == "HIGH"
        assert _waits(b_metrics) == {"found": 1, "not_found": 0}

        # Feedback through B for another fresh prediction of A's: accepted, matched when drained.
        second = make_record(id=new_id())
        await a.record([second])
        saved = await FeedbackService(engine=b_engine, prediction_log=b).submit(second.id, "LOW")
        assert saved.actual_level == "LOW"
        await _settled(a)
        await _settled(b)
        assert await _stored(b_engine) == ({answered.id, second.id}, {second.id})
        assert _waits(b_metrics)["found"] == 2

        # Unknown ids: old, far in the future, or not time-ordered — no wait at all.
        for unknown in (new_id(at=time.time() - 60), new_id(at=time.time() + 60), uuid.uuid4()):
            assert await b.get(unknown) is None
        assert _waits(b_metrics) == {"found": 2, "not_found": 0}

        # A recent id that no replica made: waited for, up to read_wait_s, then unknown.
        b.settings = b_settings.model_copy(update={"read_wait_s": 0.3})
        assert await b.get(new_id()) is None
        assert _waits(b_metrics) == {"found": 2, "not_found": 1}
    finally:
        await a.stop()
        await b.stop()
        await a_engine.dispose()
        await b_engine.dispose()
