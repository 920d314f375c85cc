"""Rows from any protocol -> rows validated exactly as the HR API validates its items."""

from __future__ import annotations

import math
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.ml.features import FEATURE_NAMES
from app.serving.codecs.errors import ProtocolInputError
from app.serving.codecs.hygiene import error_message
from app.serving.codecs.item import PredictionItem, item_rows

_ITEMS = TypeAdapter(list[PredictionItem])


def _native(value: Any) -> Any:
    """NaN (pandas' missing value) -> None, so a missing value is reported as such."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def validate_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the feature columns (extra ones are ignored, as MLflow does) and validate every row.

    Raises ``ProtocolInputError`` naming the rows and columns; submitted values are never echoed.
    """
    missing = [name for name in FEATURE_NAMES if records and name not in records[0]]
    if missing:
        raise ProtocolInputError(
            "missing required column(s): " + ", ".join(missing), "INVALID_PARAMETER_VALUE"
        )
    rows = [{name: _native(record[name]) for name in FEATURE_NAMES} for record in records]
    try:
        items = _ITEMS.validate_python(rows)
    except ValidationError as exc:
        details = []
        for err in exc.errors()[:20]:
            loc = err.get("loc", ())
            row, column = (loc[0], loc[1]) if len(loc) >= 2 else (loc[0] if loc else "?", "?")
            details.append({"field": f"rows[{row}].{column}", "type": err["type"],
                            "message": error_message(err)})
        first = exc.errors()[0]
        row, column = [*first["loc"], "?", "?"][:2]
        raise ProtocolInputError(
            f"invalid value in column '{column}' (row {row}): {error_message(first)}"
            + (f"; {exc.error_count() - 1} more error(s)" if exc.error_count() > 1 else ""),
            "BAD_REQUEST",
            details,
        ) from None
    return item_rows(items)
