"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

from app.ml.synthetic import generate


def valid_items(n: int, seed: int = 7) -> list[dict]:
    """``n`` realistic request items (no label), JSON-ready."""
    frame = generate(n, seed=seed, with_label=False)
    return frame.to_dict("records")
