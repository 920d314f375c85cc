"""Evidently's ``DataDriftPreset`` on the same window, normalised into the native result schema.

Evidently is heavy (~4 s and ~285 MB to import), so it is imported at most once per process, on
first use, from a worker thread; everything here is blocking and must run off the event loop.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pandas as pd

from app.ml.features import CATEGORICAL, FEATURE_NAMES, NUMERIC
from app.monitoring import drift_tests as stats
from app.monitoring.data import ColumnSet, Reference, Window
from app.monitoring.native import base_result
from app.monitoring.result import DriftResult, FeatureDrift

_lock = threading.Lock()
_module: SimpleNamespace | None = None
# Evidently's display names back to our method ids.
_METHOD_BY_LABEL = {m.label: m.name for m in stats.METHODS.values()}


def load() -> SimpleNamespace:
    """Import Evidently once (blocking)."""
    global _module
    with _lock:
        if _module is None:
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset

            _module = SimpleNamespace(
                Report=Report, Dataset=Dataset, DataDefinition=DataDefinition,
                DataDriftPreset=DataDriftPreset,
            )
        return _module


def is_loaded() -> bool:
    return _module is not None


def run_snapshot(reference_frame: pd.DataFrame, current_frame: pd.DataFrame, share_threshold: float,
                 methods: dict[str, str], thresholds: dict[str, float]) -> Any:
    """Run the preset; returns Evidently's snapshot (current first, as Evidently wants it)."""
    ev = load()
    definition = ev.DataDefinition(numerical_columns=list(NUMERIC), categorical_columns=list(CATEGORICAL))
    preset = ev.DataDriftPreset(
        columns=list(FEATURE_NAMES), drift_share=share_threshold,
        per_column_method=dict(methods) or None, per_column_threshold=dict(thresholds) or None,
    )
    report = ev.Report([preset], include_tests=True)
    return report.run(
        ev.Dataset.from_pandas(current_frame[list(FEATURE_NAMES)], data_definition=definition),
        ev.Dataset.from_pandas(reference_frame[list(FEATURE_NAMES)], data_definition=definition),
    )


def normalise(snapshot: Any) -> list[FeatureDrift]:
    """Per-column ``ValueDrift`` scores plus the verdicts, which only the tests carry."""
    body = snapshot.dict()
    drift_metrics = {
        m["id"]: m for m in body["metrics"] if m["config"].get("type", "").endswith(":ValueDrift")
    }
    verdicts = {}
    for test in body.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in drift_metrics:
            verdicts[drift_metrics[metric_id]["config"]["column"]] = test["status"]
    features = []
    for metric in drift_metrics.values():
        config = metric["config"]
        column = config["column"]
        method = _METHOD_BY_LABEL.get(config["method"], config["method"])
        spec = stats.METHODS.get(method)
        if column not in verdicts:
            raise RuntimeError(f"Evidently returned no drift test for column {column}")
        features.append(
            FeatureDrift(
                feature=column, kind="numeric" if column in NUMERIC else "categorical",
                method=method, method_label=config["method"], threshold=float(config["threshold"]),
                score=float(metric["value"]), score_kind=spec.kind if spec else "unknown",
                drifted=verdicts[column] == "FAIL",
            )
        )
    order = {name: i for i, name in enumerate(FEATURE_NAMES)}
    return sorted(features, key=lambda f: order[f.feature])


def run_evidently(
    reference: Reference, window: Window, share_threshold: float,
    methods: dict[str, str] | None = None, thresholds: dict[str, float] | None = None,
    with_html: bool = False,
) -> tuple[DriftResult, str | None]:
    """The Evidently report in our schema, and its self-contained HTML page when asked for."""
    started = time.perf_counter()
    snapshot = run_snapshot(reference.frame, window.to_pandas(), share_threshold,
                            methods or {}, thresholds or {})
    features = normalise(snapshot)
    current = ColumnSet.from_arrow(window.table, reference.vocabulary)
    result = base_result(reference, window, share_threshold, "evidently", "evidently", features, current)
    html: str | None = snapshot.get_html_str(as_iframe=False) if with_html else None
    result.duration_s = time.perf_counter() - started
    return result, html
