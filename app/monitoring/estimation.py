"""Label-free performance estimation (confidence-based, as NannyML's CBPE).

With calibrated probabilities a prediction is right with the probability its calibrated
probability gives the predicted level, so a window's expected accuracy is the mean of those, and
the expected confusion matrix is, per predicted level, the sum of the calibrated probabilities of
each actual level. Macro-F1 follows from that matrix. The interval comes from drawing the unknown
labels from the calibrated probabilities (multinomially per group of equal probabilities): it is
the uncertainty of a window of this size *given* calibration, not of the calibration itself, and
it cannot see concept drift (the model's probabilities are then wrong, not merely shifted).

The database returns counts per (bucket, version, predicted level, probabilities on a grid of
``1/GRID``), never the rows: a 100-tree forest's probabilities are nearly all multiples of 0.01
already, so the grid costs at most ``0.5/GRID`` per probability, and symmetrically.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mlflow.exceptions import MlflowException
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import bucket_index, json_number
from app.db.session import read_only
from app.db.tables import Prediction
from app.errors import ModelNotFound, RegistryUnavailable
from app.ml.calibration import Calibration
from app.ml.features import LEVELS
from app.monitoring.windows import TimeWindow
from app.registry.client import ModelRegistry
from app.serving.loaded_model import load_calibration
from app.serving.model_slot import ModelSlot

log = logging.getLogger(__name__)

GRID = 200
DRAWS = 300
_DRAW_CHUNK = 20
CONFIDENCE = 0.95

FloatArray = npt.NDArray[np.float64]
CalibrationOf = Callable[[str, str], Awaitable[Calibration | None]]


@dataclass
class Estimate:
    rows: int
    accuracy: float
    accuracy_interval: tuple[float, float]
    f1_macro: float
    f1_macro_interval: tuple[float, float]
    # expected_confusion[predicted][actual]: expected row counts
    expected_confusion: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "accuracy": round(self.accuracy, 6),
                "accuracy_interval": [round(v, 6) for v in self.accuracy_interval],
                "f1_macro": round(self.f1_macro, 6),
                "f1_macro_interval": [round(v, 6) for v in self.f1_macro_interval],
                "expected_confusion": {p: {a: round(v, 3) for a, v in row.items()}
                                       for p, row in self.expected_confusion.items()}}


@dataclass
class Cells:
    """Groups of predictions with equal predicted level and calibrated probabilities."""

    predicted: npt.NDArray[np.intp]  # index into LEVELS
    calibrated: FloatArray  # (cells, levels), LEVELS order
    count: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> Cells:
        return cls(np.zeros(0, np.intp), np.zeros((0, len(LEVELS))), np.zeros(0, np.int64))

    def __add__(self, other: Cells) -> Cells:
        return Cells(np.concatenate([self.predicted, other.predicted]),
                     np.concatenate([self.calibrated, other.calibrated]),
                     np.concatenate([self.count, other.count]))


def macro_f1(confusion: FloatArray) -> float:
    """Macro-F1 over the levels present as predicted or actual; ``confusion[predicted, actual]``."""
    hit = np.diag(confusion)
    predicted, actual = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (predicted + actual) > 0
    return float(np.mean(2 * hit[present] / (predicted + actual)[present]))


def estimate(cells: Cells, *, draws: int = DRAWS, seed: int = 0) -> Estimate | None:
    """The CBPE estimate of one window (None without rows)."""
    n = int(cells.count.sum())
    if n == 0:
        return None
    k = len(LEVELS)
    weighted = cells.calibrated * cells.count[:, None]
    confusion = np.zeros((k, k))
    np.add.at(confusion, cells.predicted, weighted)
    accuracy = float(np.trace(confusion) / n)
    # Labels drawn per cell, a few draws at a time to bound memory: counts of each actual level.
    rng = np.random.default_rng(seed)
    probabilities = cells.calibrated / cells.calibrated.sum(axis=1, keepdims=True)
    sampled = np.zeros((draws, k, k))
    for first in range(0, draws, _DRAW_CHUNK):
        size = min(_DRAW_CHUNK, draws - first)
        drawn = rng.multinomial(cells.count, probabilities, size=(size, len(cells.count)))
        for level in range(k):  # per predicted level, sum its cells' drawn actual counts
            sampled[first:first + size, level, :] = drawn[:, cells.predicted == level, :].sum(axis=1)
    accuracies = np.trace(sampled, axis1=1, axis2=2) / n
    f1s = np.array([macro_f1(m) for m in sampled])
    tail = (1 - CONFIDENCE) / 2 * 100
    return Estimate(
        rows=n, accuracy=accuracy,
        accuracy_interval=_interval(accuracies, tail),
        f1_macro=macro_f1(confusion), f1_macro_interval=_interval(f1s, tail),
        expected_confusion={LEVELS[p]: {LEVELS[a]: float(confusion[p, a]) for a in range(k)}
                            for p in range(k)},
    )


def _interval(values: FloatArray, tail: float) -> tuple[float, float]:
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


class EstimationService:
    """Estimates per time bucket and overall for a model's logged predictions."""

    def __init__(self, *, engine: AsyncEngine, calibration_of: CalibrationOf) -> None:
        self._engine = engine
        self._calibration_of = calibration_of

    async def by_bucket(self, window: TimeWindow, seconds: float, model_name: str,
                        model_version: str | None = None
                        ) -> tuple[dict[Any, Estimate], Estimate | None, list[str]]:
        """(estimate per bucket index, overall estimate, versions without calibration)."""
        index = bucket_index(Prediction.__table__.c.created_at, window.start.timestamp(), seconds,
                             self._engine.dialect.name)
        return await self.by_key(window, index, model_name, model_version)

    async def by_key(self, window: TimeWindow, key: ColumnElement[Any], model_name: str,
                     model_version: str | None = None
                     ) -> tuple[dict[Any, Estimate], Estimate | None, list[str]]:
        """(estimate per value of the SQL expression ``key``, overall, versions uncalibrated)."""
        cells, uncalibrated = await self.cells(window, key, model_name, model_version)
        return await asyncio.to_thread(_estimates, cells, uncalibrated)

    async def cells(self, window: TimeWindow, key: ColumnElement[Any], model_name: str,
                    model_version: str | None) -> tuple[dict[Any, Cells], list[str]]:
        p = Prediction.__table__
        grid = self.grid(p.c.probabilities)
        key = key.label("k")
        stmt = (
            select(key, p.c.model_version, p.c.level, *grid, func.count())
            .where(p.c.model_name == model_name, p.c.created_at >= window.start,
                   p.c.created_at < window.end)
            .group_by(key, p.c.model_version, p.c.level, *grid)
        )
        if model_version is not None:
            stmt = stmt.where(p.c.model_version == model_version)
        return await self.cells_of(stmt, model_name)

    def grid(self, probabilities: ColumnElement[Any]) -> list[ColumnElement[Any]]:
        """Each level's probability (a JSON column of this database) rounded to the grid."""
        dialect = self._engine.dialect.name
        return [func.round(json_number(probabilities, level, dialect) * GRID) for level in LEVELS]

    async def estimate_of(self, stmt: Select[Any], model_name: str
                          ) -> tuple[Estimate | None, list[str]]:
        """The overall estimate of the rows ``stmt`` counts (its columns as ``cells_of`` reads)."""
        cells, uncalibrated = await self.cells_of(stmt, model_name)
        _, overall, _ = await asyncio.to_thread(_estimates, cells, uncalibrated)
        return overall, uncalibrated

    async def cells_of(self, stmt: Select[Any], model_name: str
                       ) -> tuple[dict[Any, Cells], list[str]]:
        """Cells from ``stmt``'s rows: (key, version, predicted level, *grid, count)."""
        async with read_only(self._engine, "predictions cannot be read right now") as conn:
            rows = (await conn.execute(stmt)).all()
        by_version: dict[str, list[Any]] = {}
        for row in rows:
            by_version.setdefault(row[1], []).append(row)
        out: dict[Any, Cells] = {}
        uncalibrated = []
        position = {level: i for i, level in enumerate(LEVELS)}
        for version, version_rows in by_version.items():
            calibration = await self._calibration_of(model_name, version)
            if calibration is None:
                uncalibrated.append(version)
                continue
            kept = [r for r in version_rows if r[2] in position and None not in r[3:3 + len(LEVELS)]]
            if not kept:
                continue
            raw = np.array([r[3:3 + len(LEVELS)] for r in kept], dtype=np.float64) / GRID
            calibrated = calibrated_in_level_order(calibration, raw)
            predicted = np.array([position[r[2]] for r in kept], dtype=np.intp)
            counts = np.array([int(r[-1]) for r in kept], dtype=np.int64)
            where: dict[Any, list[int]] = {}
            for i, r in enumerate(kept):
                where.setdefault(_key(r[0]), []).append(i)
            for value, mine in where.items():
                part = Cells(predicted[mine], calibrated[mine], counts[mine])
                out[value] = out[value] + part if value in out else part
        return out, sorted(uncalibrated)


def _key(value: Any) -> Any:
    """Bucket indexes come back as floats or ints depending on the database."""
    return int(value) if isinstance(value, float) else value


def calibrated_in_level_order(calibration: Calibration, raw: FloatArray) -> FloatArray:
    """``raw`` columns are LEVELS; the maps are in the model's class order."""
    order = [LEVELS.index(c) for c in calibration.classes]
    calibrated = calibration.apply(raw[:, order])
    back = np.empty_like(calibrated)
    back[:, order] = calibrated
    return back


def _estimates(cells: dict[Any, Cells], uncalibrated: list[str]
               ) -> tuple[dict[Any, Estimate], Estimate | None, list[str]]:
    per_key = {k: e for i, (k, c) in enumerate(cells.items())
               if (e := estimate(c, seed=i)) is not None}
    everything = Cells.empty()
    for c in cells.values():
        everything = everything + c
    return per_key, estimate(everything), uncalibrated


class VersionCalibrations:
    """The calibration maps of any version: the serving one's from memory, others from the model
    cache (downloaded once); a version without maps is remembered as such."""

    def __init__(self, *, registry: ModelRegistry, slot: ModelSlot) -> None:
        self._registry = registry
        self._slot = slot
        self._known: dict[tuple[str, str], Calibration | None] = {}

    async def __call__(self, model_name: str, version: str) -> Calibration | None:
        current = self._slot.current
        if current is not None and (current.name, current.version) == (model_name, version):
            return current.calibration
        key = (model_name, version)
        if key not in self._known:
            try:
                self._known[key] = await asyncio.to_thread(self._load, model_name, version)
            except ModelNotFound:  # deleted from the registry: its rows stay unestimated
                self._known[key] = None
            except (RegistryUnavailable, MlflowException, OSError) as exc:  # retried next call
                log.warning("no calibration for %s version %s right now: %s", model_name,
                            version, exc)
                return None
        return self._known[key]

    def _load(self, model_name: str, version: str) -> Calibration | None:
        ref = self._registry.get_version(model_name, version)
        return load_calibration(self._registry.download(ref))
