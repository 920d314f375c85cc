"""Drift reports: read the window, run an engine off the event loop, store the result.

The native engine is the default; Evidently runs on request, and when it fails (or is slower than
its timeout) the native engine answers and the result says so.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import DriftSettings
from app.db.session import read_only, unit_of_work
from app.db.tables import DriftReport
from app.errors import ExplanationUnavailable, NoDataInWindow, ReferenceUnavailable
from app.explanations.service import ExplanationService
from app.metrics import ServiceMetrics
from app.ml.features import BY_NAME, CATEGORICAL, FEATURE_NAMES, LEVELS
from app.monitoring import evidently_engine, html
from app.monitoring.data import Reference, Window
from app.monitoring.model_drift import (
    ImportanceDrift,
    confidence_drift,
    importance_drift,
    mean_abs_contribution,
)
from app.monitoring.native import insufficient_result, run_native
from app.monitoring.result import DriftResult, shortage
from app.monitoring.window_reader import read_window
from app.monitoring.windows import Span, TimeWindow
from app.serving.loaded_model import LoadedModel, to_frame
from app.serving.model_slot import ModelSlot

if TYPE_CHECKING:  # the engine module imports numba: loaded by the explanation service
    from app.explanations.engine import ExplanationEngine

log = logging.getLogger(__name__)

ENGINES = ("native", "evidently")
_UNREADABLE = "stored drift reports cannot be read right now"
Computed = tuple[DriftResult, str | None]  # the result, and its page when one was asked for


@dataclass(frozen=True)
class StoredReport:
    """The newest stored report of a version, as the health check reads it."""

    id: uuid.UUID
    created_at: datetime
    engine: str
    drift_share: float
    dataset_drift: bool
    result: dict[str, Any]  # ``DriftResult.to_dict()``


def build_reference(model: LoadedModel) -> Reference:
    """The model's reference sample with the model's own predictions on it (blocking)."""
    if model.reference is None or model.reference.empty:
        raise ReferenceUnavailable(f"model version {model.version} has no reference sample")
    frame = to_frame(model.reference.to_dict("records"))
    predicted = [LEVELS[i] for i in model.predict_proba(frame).argmax(axis=1)]
    reference = Reference.build(model.name, model.version, model.reference, predicted,
                                training_vocabulary(model))
    if model.holdout is not None and not model.holdout.empty:
        held_out = to_frame(model.holdout[list(FEATURE_NAMES)].to_dict("records"))
        reference.confidence = model.predict_proba(held_out).max(axis=1)
        reference.confidence_source = "holdout"
    return reference


def _importance(engine: ExplanationEngine, rows: list[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """(mean |contribution| per HR feature, rows explained); blocking."""
    explained = engine.explain_rows(rows)[1]
    return mean_abs_contribution(explained.features, explained.proba), len(rows)


def _held_out_importance(engine: ExplanationEngine, held_out: pd.DataFrame,
                         n: int) -> tuple[np.ndarray, int]:
    sample = held_out.sample(min(n, len(held_out)), random_state=0)
    return _importance(engine, sample[list(FEATURE_NAMES)].to_dict("records"))


def _sample_rows(window: Window, n: int) -> list[dict[str, Any]]:
    """A seeded random sample of the window's rows, typed as validated request rows."""
    table = window.table
    if table.num_rows > n:
        picked = np.sort(np.random.default_rng(0).choice(table.num_rows, n, replace=False))
        table = table.take(picked)
    frame = table.select(list(FEATURE_NAMES)).to_pandas()
    for name in FEATURE_NAMES:
        if BY_NAME[name].kind == "integer":
            frame[name] = frame[name].astype("int64")
    return list(frame.to_dict("records"))


def training_vocabulary(model: LoadedModel) -> dict[str, set[str]] | None:
    """Categories the fitted one-hot encoder knows, i.e. those seen in training (blocking when
    the version serves from its bundle without a fast transform: never the case, see
    ``LoadedModel.serve_bundle``)."""
    if model.fast is not None:
        return model.fast.vocabulary()
    pipeline: Any = model.fitted()  # sklearn: untyped
    try:
        encoder = pipeline.named_steps["preprocess"].named_transformers_["categorical"]
        return {name: set(map(str, cats))
                for name, cats in zip(CATEGORICAL, encoder.categories_, strict=True)}
    except (AttributeError, KeyError, ValueError):
        return None  # another pipeline layout: the reference sample's categories stand in


class DriftService:
    def __init__(self, *, engine: AsyncEngine, models: ModelSlot, settings: DriftSettings,
                 metrics: ServiceMetrics, explanations: ExplanationService | None = None) -> None:
        self._engine = engine
        self._explanations = explanations
        # Importance on the held-out rows of the serving version: (per feature, rows).
        self._importances: dict[tuple[str, str], tuple[np.ndarray, int]] = {}
        self._models = models
        self.settings = settings
        self._metrics = metrics
        self._references: dict[tuple[str, str], Reference] = {}
        self._evidently_slot: asyncio.Semaphore | None = None

    def window(self, start: datetime | None, end: datetime | None, last: Span | None) -> TimeWindow:
        """The window a request names; without start, end and last the default window."""
        return TimeWindow.resolve(start, end, last, self.settings.default_window)

    async def reference(self) -> Reference:
        model = self._models.require()
        key = (model.name, model.version)
        if key not in self._references:
            reference = await asyncio.to_thread(build_reference, model)
            self._references = {key: reference}  # only the serving version is kept
        return self._references[key]

    async def report(self, window: TimeWindow, engine: str = "native", with_html: bool = False,
                     store: bool = True) -> Computed:
        try:
            result, page = await self._compute(window, engine, with_html)
        except NoDataInWindow:
            self._metrics.drift_checks.labels(engine, "no_data").inc()
            raise
        except Exception:
            self._metrics.drift_checks.labels(engine, "error").inc()
            raise
        outcome = ("insufficient_data" if result.insufficient else
                   "fallback" if result.fallback_reason else "ok")
        self._metrics.drift_checks.labels(engine, outcome).inc()
        if store:
            result.report_id = await self._store(result)
        return result, page

    async def page(self, window: TimeWindow, engine: str = "evidently") -> str:
        """The report as a self-contained HTML page (stored like any report)."""
        _, page = await self.report(window, engine, with_html=True)
        if page is None:  # every engine renders a page when asked: a None here is a bug
            raise RuntimeError(f"the {engine} drift engine returned no page")
        return page

    async def _compute(self, span: TimeWindow, engine: str, with_html: bool) -> Computed:
        s = self.settings
        reference = await self.reference()
        window = await read_window(self._engine, reference.model_name, reference.model_version,
                                   span.start, span.end, s.max_current_rows, s.read_connections)
        if window.rows == 0:
            raise NoDataInWindow(
                f"no predictions of version {reference.model_version} between "
                f"{span.start.isoformat()} and {span.end.isoformat()}"
            )
        reason = shortage(window.rows, reference.rows, s.min_rows)
        if reason is not None:  # no engine runs: a verdict on a handful of rows is noise
            result = await asyncio.to_thread(insufficient_result, reference, window,
                                             s.share_threshold, engine, s.min_rows, reason)
            return result, await self._render(result, with_html)
        if engine == "evidently":
            try:
                result, page = await self._evidently(reference, window, with_html)
                await self._add_model_drift(result, reference, window)
                return result, page  # Evidently's own page
            except Exception as exc:
                reason = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]
                log.warning("Evidently drift report failed (%s); the native engine answers", reason)
                result = await asyncio.to_thread(
                    run_native, reference, window, s.share_threshold, s.methods, s.thresholds,
                    None, "evidently",
                )
                result.fallback_reason = reason
                return await self._with_model_drift(result, reference, window, with_html)
        result = await asyncio.to_thread(run_native, reference, window, s.share_threshold,
                                         s.methods, s.thresholds)
        return await self._with_model_drift(result, reference, window, with_html)

    async def _with_model_drift(self, result: DriftResult, reference: Reference, window: Window,
                                with_html: bool) -> Computed:
        await self._add_model_drift(result, reference, window)
        return result, await self._render(result, with_html)

    async def _add_model_drift(self, result: DriftResult, reference: Reference,
                               window: Window) -> None:
        """The sections on the model itself, the same whichever engine tested the features."""
        s = self.settings
        result.confidence_drift = await asyncio.to_thread(
            confidence_drift, reference, window, s.confidence_threshold, s.min_rows)
        result.importance_drift = await self._importance_drift(window, result)

    async def _importance_drift(self, window: Window, result: DriftResult) -> ImportanceDrift | None:
        """Importance per HR feature on bounded samples of the window and of the version's
        held-out rows (its reference cached per version); None, with a note, when the version
        cannot be explained or the window is too small."""
        s = self.settings
        model = self._models.require()
        if self._explanations is None or s.importance_rows == 0:
            return None
        if model.holdout is None or window.rows < s.min_rows:
            return None
        try:
            engine = await self._explanations.engine_for(model)
        except ExplanationUnavailable as exc:
            result.notes.append(f"no importance drift: {exc.message}")
            return None
        key = (model.name, model.version)
        if key not in self._importances:
            held_out = model.holdout
            self._importances = {key: await asyncio.to_thread(
                _held_out_importance, engine, held_out, s.importance_rows)}
        ref_importance, ref_rows = self._importances[key]
        current, rows = await asyncio.to_thread(
            lambda: _importance(engine, _sample_rows(window, s.importance_rows)))
        return importance_drift(engine.feature_names, ref_importance, current, ref_rows, rows,
                                s.importance_threshold, "holdout")

    @staticmethod
    async def _render(result: DriftResult, with_html: bool) -> str | None:
        return await asyncio.to_thread(html.render, result) if with_html else None

    async def _evidently(self, reference: Reference, window: Window, with_html: bool) -> Computed:
        s = self.settings
        if self._evidently_slot is None:  # made inside the running loop
            self._evidently_slot = asyncio.Semaphore(1)
        async with self._evidently_slot:  # one Evidently run at a time: it needs ~1 GB at 1M rows
            # The import happens here too, once, in a worker thread; a timed-out thread finishes
            # on its own but no caller waits for it.
            return await asyncio.wait_for(
                asyncio.to_thread(evidently_engine.run_evidently, reference, window,
                                  s.share_threshold, s.methods, s.thresholds, with_html),
                s.evidently_timeout_s,
            )

    async def _store(self, result: DriftResult) -> str:
        report_id = uuid.uuid4()
        result.report_id = str(report_id)
        async with unit_of_work(self._engine, "drift reports cannot be stored right now") as conn:
            await conn.execute(
                insert(DriftReport).values(
                    id=report_id, model_name=result.model_name, model_version=result.model_version,
                    engine=result.engine, window_start=result.window_start,
                    window_end=result.window_end, reference_rows=result.reference_rows,
                    # The columns are not nullable; the result body (status, nulls) is the truth.
                    current_rows=result.current_rows, drift_share=result.drift_share or 0.0,
                    dataset_drift=bool(result.dataset_drift), result=result.to_dict(),
                )
            )
        return str(report_id)

    def publish(self, result: DriftResult) -> None:
        """Prometheus gauges for the latest periodic check."""
        self._set_gauges([(f.feature, f.score, f.drifted) for f in result.features],
                         result.drift_share, result.dataset_drift)

    def publish_stored(self, body: dict[str, Any]) -> None:
        """The same gauges from a stored report (``DriftResult.to_dict()``), one another worker made."""
        self._set_gauges([(f["feature"], f["score"], f["drifted"]) for f in body["features"]],
                         body["drift_share"], body["dataset_drift"])

    def _set_gauges(self, features: list[tuple[str, float, bool]], share: float | None,
                    dataset_drift: bool | None) -> None:
        """``share``/``dataset_drift`` None (insufficient data): the gauges say NaN, unknown,
        never "no drift" or a stale verdict."""
        m = self._metrics
        nan = float("nan")
        # A feature absent from this check loses its series (multi-process: reads NaN).
        m.drift_scores.replace({(feature,): score for feature, score, _ in features})
        m.drift_verdicts.replace({(feature,): 1 if drifted else 0 for feature, _, drifted in features})
        m.drift_share.set(nan if share is None else share)
        m.dataset_drift.set(nan if dataset_drift is None else 1 if dataset_drift else 0)

    async def stored(self, report_id: str) -> dict[str, Any] | None:
        """A stored report's result body."""
        t = DriftReport.__table__
        async with read_only(self._engine, _UNREADABLE) as conn:
            return (await conn.execute(
                select(t.c.result).where(t.c.id == uuid.UUID(report_id)))).scalar_one_or_none()

    async def latest_stored(self, model_name: str, model_version: str,
                            since: datetime) -> StoredReport | None:
        """The newest stored report of a version created after ``since``."""
        t = DriftReport.__table__
        stmt = (
            select(t.c.id, t.c.created_at, t.c.engine, t.c.drift_share, t.c.dataset_drift,
                   t.c.result)
            .where(t.c.model_name == model_name, t.c.model_version == model_version,
                   t.c.created_at >= since)
            .order_by(t.c.created_at.desc()).limit(1)
        )
        async with read_only(self._engine, _UNREADABLE) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return StoredReport(**row) if row else None
