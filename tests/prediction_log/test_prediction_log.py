"""1,000 predictions leave exactly 1,000 rows, each naming its model version (SQLite and Postgres)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app.config import LimitsSettings
from app.db.engine import create_engine
from app.db.tables import Prediction
from tests.support.factories import valid_items
from tests.support.running_app import RunningApp
from tests.support.settings import make_settings


async def _post_thousand(client) -> set[str]:
    items = valid_items(1000, seed=21)
    ids: set[str] = set()

    async def send(chunk):
        response = await client.post("/v1/predictions", json={"items": chunk})
        assert response.status_code == 200, response.text
        ids.update(p["prediction_id"] for p in response.json()["predictions"])

    # A mix of single-item and multi-item requests, concurrently.
    singles = [send([item]) for item in items[:400]]
    batches = [send(items[i : i + 50]) for i in range(400, 1000, 50)]
    await asyncio.gather(*singles, *batches)
    return ids


async def _rows(url: str):
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(Prediction))
            by_version = (
                await conn.execute(
                    select(Prediction.model_version, func.count()).group_by(Prediction.model_version)
                )
            ).all()
            ids = {str(i) for i in (await conn.scalars(select(Prediction.id))).all()}
        return total, dict(by_version), ids
    finally:
        await engine.dispose()


async def test_thousand_predictions_leave_thousand_rows(registry_dir, db_url):
    url = db_url
    # The burst below has ~410 requests in flight at once: admit them all.
    settings = make_settings(registry_dir, database_url=url, limits=LimitsSettings(max_in_flight=1000))
    async with RunningApp(settings) as client:
        ids = await _post_thousand(client)
    # The lifespan has ended: the log was drained on shutdown.
    total, by_version, stored = await _rows(url)
    assert len(ids) == 1000
    assert total == 1000
    assert by_version == {"1": 1000}
    assert stored == ids
