"""Read back what reached the ``prediction`` table."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db.engine import create_engine
from app.db.tables import Prediction


async def stored_ids(url: str) -> tuple[int, dict[str, int]]:
    """(total rows, rows per id)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(Prediction))
            counts = (
                await conn.execute(select(Prediction.id, func.count()).group_by(Prediction.id))
            ).all()
    finally:
        await engine.dispose()
    return total, {str(i): n for i, n in counts}


async def assert_exactly_once(url: str, ids: list[str]) -> int:
    """Every id is stored exactly once (and was answered once); returns the table's row count."""
    assert len(ids) == len(set(ids)), "the service handed out a prediction id twice"
    total, per_id = await stored_ids(url)
    missing = [i for i in ids if per_id.get(i, 0) == 0]
    assert not missing, f"{len(missing)} of {len(ids)} answered predictions are not in the table"
    assert all(per_id[i] == 1 for i in ids)
    assert total == sum(per_id.values())
    return total
