"""Data factories of the tests: realistic request items (not fixtures)."""

from __future__ import annotations

from typing import Any

from app.ml.synthetic import generate


def valid_items(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` realistic request items (no label), JSON-ready."""
    frame = generate(n, seed=seed, with_label=False)
    records: list[dict[str, Any]] = frame.to_dict("records")
    return records
