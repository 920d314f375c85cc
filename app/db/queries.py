"""SQL fragments several areas share (monitoring reads, retraining's data)."""

from __future__ import annotations

from sqlalchemy import FromClause, Subquery, func, select


def latest_per_prediction(table: FromClause, value: str) -> Subquery:
    """``prediction_id``, ``table.c[value]`` and ``rn`` (1 = the newest row per prediction): the
    latest feedback (or review) wins, ties broken by id. Join on ``rn == 1``."""
    return select(
        table.c.prediction_id, table.c[value],
        func.row_number().over(partition_by=table.c.prediction_id,
                               order_by=(table.c.created_at.desc(), table.c.id.desc())).label("rn"),
    ).subquery()
