"""The explanation document of one prediction (JSON-ready), checked additive before it exists.

Contributions are per HR feature (a categorical's one-hot columns summed back to it) and per
class; ``base_values`` + the sum of a class's contributions is the model's probability of that
class. The model's probabilities here are the forest's own float64 tree sums; the logged ones may
come from the compiled float32 path, so both are kept when they differ by more than
``TOLERANCE`` (docs/explanations.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from app.ml.features import LEVELS

TOLERANCE = 1e-6
TOP_FACTORS = 5
METHOD = "tree_path_dependent"


class NotAdditive(AssertionError):
    """Base value + contributions missed the model's probability: a bug, never a document."""


@dataclass(frozen=True)
class ModelOf:
    """The version that made the prediction, as the document names it."""

    name: str
    version: str
    semver: str | None
    run_id: str | None


def _levels(values: npt.NDArray[np.float64]) -> dict[str, float]:
    return {level: float(v) for level, v in zip(LEVELS, values.tolist(), strict=True)}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary(level: str, probability: float, factors: list[dict[str, Any]]) -> str:
    """One plain-language sentence: the level, and the two factors that moved it most."""
    head = f"{level} (p={probability:.2f})"
    if not factors:
        return f"{head}: no feature moved it from the base value."
    parts = [
        f"{f['feature']} = {_shown(f['value'])} {'raised' if f['direction'] == 'raises' else 'lowered'} "
        f"it by {abs(f['contribution']):.2f}"
        for f in factors[:2]
    ]
    return f"{head} mainly because {' and '.join(parts)}."


def build(
    *,
    prediction_id: uuid.UUID,
    model: ModelOf,
    features: list[str],
    row: dict[str, Any],
    level: str,
    base: npt.NDArray[np.float64],
    contributions: npt.NDArray[np.float64],
    model_proba: npt.NDArray[np.float64],
    logged: dict[str, float] | None,
) -> dict[str, Any]:
    """The document of one row: ``contributions`` is HR features x classes (LEVELS order),
    ``model_proba`` the forest's probabilities, ``logged`` the ones the prediction returned.

    Raises ``NotAdditive`` when base + contributions misses ``model_proba`` by more than
    ``TOLERANCE`` in any class."""
    explained = base + contributions.sum(axis=0)
    gap = float(np.abs(explained - model_proba).max())
    if not gap <= TOLERANCE:
        raise NotAdditive(f"explanation of {prediction_id} is not additive (max gap {gap:.3g})")
    k = LEVELS.index(level)
    order = sorted(range(len(features)), key=lambda g: (-abs(float(contributions[g, k])), g))
    top = [
        {"feature": features[g], "value": row.get(features[g]),
         "contribution": float(contributions[g, k]),
         "direction": "raises" if contributions[g, k] > 0 else "lowers"}
        for g in order[:TOP_FACTORS] if contributions[g, k] != 0.0
    ]
    probabilities = _levels(model_proba)
    document: dict[str, Any] = {
        "prediction_id": str(prediction_id),
        "model": {"name": model.name, "version": model.version, "semver": model.semver,
                  "run_id": model.run_id},
        "method": METHOD,
        "level": level,
        "probabilities": probabilities,
        "base_values": _levels(base),
        "contributions": [
            {"feature": name, "value": row.get(name), "contributions": _levels(contributions[g])}
            for g, name in enumerate(features)
        ],
        "top_factors": top,
        "summary": summary(level, probabilities[level], top),
        "additivity_error": gap,
        "computed_at": datetime.now(UTC).isoformat(),
    }
    if logged is not None:
        logged_gap = max(abs(logged[lv] - probabilities[lv]) for lv in LEVELS)
        if logged_gap > TOLERANCE:
            # The prediction was answered by the compiled float32 forest; the explanation adds
            # up to the forest's own float64 probabilities, which are shown beside the logged ones.
            document["logged_probabilities"] = {lv: float(logged[lv]) for lv in LEVELS}
            document["note"] = (
                f"the logged probabilities differ from the forest's float64 ones by up to "
                f"{logged_gap:.2g} (the compiled float32 path answered); the contributions add up "
                "to the float64 probabilities"
            )
    return document
