"""A database that cannot be reached is 503 database_unavailable for every monitoring read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db.engine import create_engine
from app.errors import DatabaseUnavailable
from app.metrics import ServiceMetrics
from app.monitoring.performance import PerformanceService
from app.monitoring.window_reader import read_window
from app.monitoring.windows import TimeWindow

# Port 9 (discard) on the loopback: nothing listens, so every connection is refused at once.
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:9/monitoring"


async def test_an_unreachable_database_is_unavailable_not_a_crash():
    engine = create_engine(UNREACHABLE)
    window = TimeWindow.last(timedelta(days=1))
    try:
        performance = PerformanceService(engine=engine, metrics=ServiceMetrics(), trend_tolerance=0.02)
        with pytest.raises(DatabaseUnavailable, match="feedback cannot be read"):
            await performance.compute(window, timedelta(hours=1), "future-skills-model")
        with pytest.raises(DatabaseUnavailable, match="prediction log cannot be read"):
            await read_window(engine, "future-skills-model", "1", window.start, window.end, 100)
    finally:
        await engine.dispose()
