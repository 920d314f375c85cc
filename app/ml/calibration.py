"""Probability calibration for label-free performance estimation (docs/monitoring.md).

A random forest's probabilities are not calibrated: among rows it gives 0.7, the share that are
right is not 0.7. Performance estimation (CBPE) needs calibrated ones, so training fits one
isotonic map per class, one-vs-rest, on held-out rows the forest never saw, and the maps travel
with the version as JSON (knots only: applying them is ``np.interp``, no scikit-learn object to
unpickle). Served probabilities stay the model's own; the maps are for estimation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CALIBRATION_FILE = "calibration.json"
HOLDOUT_FILE = "holdout.parquet"  # the held-out rows the maps were judged on
METHOD = "isotonic-one-vs-rest"
ECE_BINS = 10


@dataclass(frozen=True)
class ClassMap:
    """A non-decreasing piecewise-linear map of one class's probability (clipped at the ends)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, p: FloatArray) -> FloatArray:
        return np.interp(p, self.x, self.y)


@dataclass(frozen=True)
class Calibration:
    classes: tuple[str, ...]
    maps: tuple[ClassMap, ...]
    rows: int  # held-out rows the maps were fitted on

    def apply(self, proba: FloatArray) -> FloatArray:
        """Calibrated probabilities, columns in ``classes`` order, rows summing to 1."""
        raw = np.asarray(proba, dtype=np.float64)
        mapped = np.column_stack([m(raw[:, i]) for i, m in enumerate(self.maps)])
        total = mapped.sum(axis=1, keepdims=True)
        # A row every map sends to 0 keeps the model's own probabilities rather than dividing by 0.
        return np.where(total > 0, mapped / np.where(total > 0, total, 1.0), raw)

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "rows": self.rows, "classes": list(self.classes),
                "maps": {c: {"x": list(m.x), "y": list(m.y)}
                         for c, m in zip(self.classes, self.maps, strict=True)}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Calibration:
        if doc.get("method") != METHOD:
            raise ValueError(f"unknown calibration method {doc.get('method')!r}")
        classes = tuple(str(c) for c in doc["classes"])
        maps = tuple(ClassMap(tuple(map(float, doc["maps"][c]["x"])),
                              tuple(map(float, doc["maps"][c]["y"]))) for c in classes)
        return cls(classes, maps, int(doc["rows"]))


def fit_calibration(proba: FloatArray, y: npt.ArrayLike, classes: tuple[str, ...]) -> Calibration:
    """One isotonic map per class on held-out rows (``proba`` columns in ``classes`` order)."""
    from sklearn.isotonic import IsotonicRegression  # training only: serving applies the knots

    labels = np.asarray(y)
    maps = []
    for i, level in enumerate(classes):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(proba[:, i], (labels == level).astype(np.float64))
        maps.append(ClassMap(tuple(map(float, iso.X_thresholds_)),
                             tuple(map(float, iso.y_thresholds_))))
    return Calibration(classes, tuple(maps), len(labels))


def expected_calibration_error(proba: FloatArray, y: npt.ArrayLike, classes: tuple[str, ...],
                               bins: int = ECE_BINS) -> float:
    """Top-label ECE: the row-weighted gap between confidence and accuracy over equal-width bins."""
    labels = np.asarray(y)
    confidence = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap += in_bin.sum() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(gap / len(labels))
