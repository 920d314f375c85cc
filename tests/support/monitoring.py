"""Helpers of the monitoring tests: predictions and feedback written straight into the tables."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import func, insert, select

from app.db.engine import create_engine
from app.db.tables import Prediction, PredictionFeedback
from app.ml.features import FEATURE_NAMES


def prediction_rows(frame: pd.DataFrame, levels, created_at: datetime, version: str = "1",
                    latency_ms: float = 5.0, model_name: str = "future-skills-model") -> list[dict]:
    records = frame[list(FEATURE_NAMES)].to_dict("records")
    return [
        {
            "id": uuid.uuid4(), "created_at": created_at, "model_name": model_name,
            "model_version": version, "features": rec, "level": level,
            "probabilities": {"LOW": 0.2, "MEDIUM": 0.3, "HIGH": 0.5}, "score": 65.0,
            "latency_ms": latency_ms, "request_id": None, "protocol": "v1", "subject_hash": None,
        }
        for rec, level in zip(records, levels, strict=True)
    ]


async def insert_rows(db_url: str, table, rows: list[dict]) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            for i in range(0, len(rows), 1000):
                await conn.execute(insert(table), rows[i:i + 1000])
    finally:
        await engine.dispose()


async def insert_predictions(db_url: str, rows: list[dict]) -> None:
    await insert_rows(db_url, Prediction.__table__, rows)


async def insert_feedback(db_url: str, pairs: list[tuple[uuid.UUID, str, datetime]]) -> None:
    rows = [{"id": uuid.uuid4(), "prediction_id": pid, "actual_level": actual, "created_at": at}
            for pid, actual, at in pairs]
    await insert_rows(db_url, PredictionFeedback.__table__, rows)


async def count_predictions(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(Prediction))).scalar_one()
    finally:
        await engine.dispose()


async def wait_logged(db_url: str, expected: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (n := await count_predictions(db_url)) < expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {n} of {expected} predictions logged after {timeout}s")
        await asyncio.sleep(0.1)


def now() -> datetime:
    return datetime.now(UTC)
