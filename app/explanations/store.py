"""Stored explanation documents (table ``prediction_explanation``): written once, read back.

Two workers may explain the same prediction at once: the insert skips an existing row, and both
return what is stored, so every read of a prediction sees one document.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import is_postgres
from app.db.session import read_only, unit_of_work
from app.db.tables import PredictionExplanation

_TABLE: Table = PredictionExplanation.__table__  # type: ignore[assignment]  # a Table, typed FromClause


class ExplanationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, prediction_id: uuid.UUID) -> dict[str, Any] | None:
        stmt = select(_TABLE.c.document).where(_TABLE.c.prediction_id == prediction_id)
        async with read_only(self._engine) as conn:
            document: dict[str, Any] | None = (await conn.execute(stmt)).scalar_one_or_none()
        return document

    async def add(self, documents: list[dict[str, Any]]) -> None:
        """Insert documents whose prediction has none yet (an existing one is kept)."""
        if not documents:
            return
        rows = [
            {"prediction_id": uuid.UUID(d["prediction_id"]), "model_name": d["model"]["name"],
             "model_version": d["model"]["version"], "method": d["method"], "document": d}
            for d in documents
        ]
        async with unit_of_work(self._engine) as conn:
            insert: Any = postgresql.insert(_TABLE) if is_postgres(conn) else sqlite.insert(_TABLE)
            await conn.execute(insert.on_conflict_do_nothing(index_elements=[_TABLE.c.prediction_id]), rows)
