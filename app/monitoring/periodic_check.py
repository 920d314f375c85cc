"""The periodic drift check: a report over the last window, to Prometheus and to MLflow.

MLflow is written through an ``MlflowClient`` bound to our stores (never the fluent API's
process-wide state), in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from mlflow.entities import Metric, Param, RunTag

from app.config import DriftSettings, Duration
from app.db.scheduling import SlotClaims, sleep_until_next_slot
from app.errors import DatabaseUnavailable, DomainError
from app.monitoring.drift_service import DriftService
from app.monitoring.estimation import Estimate, EstimationService
from app.monitoring.performance import PerformanceService
from app.monitoring.result import DriftResult
from app.monitoring.windows import TimeWindow
from app.registry.client import ModelRegistry

log = logging.getLogger(__name__)

MONITORING_EXPERIMENT = "production-monitoring"
# With a tracking server, MlflowClient.set_terminated writes "View run ... at: URL" lines to
# stdout (mlflow/tracking/_tracking_service/client.py, _log_url), which breaks `drift --json`
# and JSON log lines; the run id is logged and printed by us instead. An operator may set it false.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def log_report(registry: ModelRegistry, result: DriftResult, page: str | None,
               slot: datetime | None = None, estimated: Estimate | None = None) -> str:
    """One MLflow run per report: a metric per feature, the model's confidence drift, the
    label-free estimate of the window when there is one, the JSON and the HTML as artifacts;
    a periodic check's run is tagged with its slot."""
    client = registry.client
    experiment_id = registry.ensure_experiments((MONITORING_EXPERIMENT,))[MONITORING_EXPERIMENT]
    run = client.create_run(
        experiment_id,
        run_name=f"drift {result.model_name} v{result.model_version}",
        tags={"model_name": result.model_name, "model_version": result.model_version,
              "engine": result.engine, "drift_report_id": result.report_id or "",
              **({"slot": slot.isoformat()} if slot else {})},
    )
    run_id: str = run.info.run_id
    try:
        now = int(time.time() * 1000)
        share, dataset_drift = result.drift_share, result.dataset_drift
        verdict = [] if share is None or dataset_drift is None else [  # no verdict on too few rows
            Metric("drift_share", share, now, 0),
            Metric("dataset_drift", float(dataset_drift), now, 0),
        ]
        metrics = [
            *verdict,
            Metric("current_rows", float(result.current_rows), now, 0),
            Metric("reference_rows", float(result.reference_rows), now, 0),
            Metric("unseen_category_rate", result.unseen_categories.rate, now, 0),
        ]
        for f in result.features:
            metrics.append(Metric(f"drift_score.{f.feature}", f.score, now, 0))
            metrics.append(Metric(f"drifted.{f.feature}", float(f.drifted), now, 0))
        if result.prediction_drift:
            metrics.append(Metric("drift_score.predicted_level", result.prediction_drift.score, now, 0))
        if result.confidence_drift:
            confidence = result.confidence_drift
            metrics += [Metric("drift_score.confidence", confidence.score, now, 0),
                        Metric("drifted.confidence", float(confidence.drifted), now, 0),
                        Metric("confidence_mean", confidence.current_mean, now, 0)]
        if result.importance_drift:
            metrics.append(Metric("drifted.importance", float(result.importance_drift.drifted),
                                  now, 0))
            for feature in result.importance_drift.features:
                metrics.append(Metric(f"importance.{feature.feature}", feature.current, now, 0))
        if estimated is not None:
            metrics += [Metric("estimated_accuracy", estimated.accuracy, now, 0),
                        Metric("estimated_f1_macro", estimated.f1_macro, now, 0),
                        Metric("estimated_rows", float(estimated.rows), now, 0)]
        params = [
            Param("window_start", result.window_start.isoformat() if result.window_start else ""),
            Param("window_end", result.window_end.isoformat() if result.window_end else ""),
            Param("share_threshold", str(result.share_threshold)),
            Param("sampled", str(result.sampled)),
            Param("min_rows", str(result.min_rows or "")),
        ]
        client.log_batch(run_id, metrics=metrics, params=params,
                         tags=[RunTag("requested_engine", result.requested_engine),
                               RunTag("status", result.status)])
        client.log_text(run_id, json.dumps(result.to_dict(), indent=2), "drift/report.json")
        if page is not None:
            client.log_text(run_id, page, "drift/report.html")
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


CHECK_JOB = "drift-check"
# Called after each periodic check this worker ran, with its result and the dataset-drift verdict
# of the previous periodic check (None when none is kept): the retraining trigger
# (``app.training.proposals.ProposalService.on_drift``). Its failures are logged, never fatal.
DriftFollowUp = Callable[[DriftResult, bool | None], Awaitable[object]]
# Previous slots looked at for a verdict (a skipped, failed or insufficient-data one has none).
_PREVIOUS_SLOTS = 10


class DriftMonitor:
    def __init__(self, *, drift: DriftService, performance: PerformanceService,
                 registry: ModelRegistry, settings: DriftSettings, health_window: Duration,
                 health_bucket: Duration, claims: SlotClaims, model_name: str,
                 estimation: EstimationService | None = None,
                 on_result: DriftFollowUp | None = None) -> None:
        """``model_name``: the served model, whose accuracy gauge every slot refreshes;
        ``on_result``: the follow-up of each check this worker runs (``DriftFollowUp``)."""
        self.on_result = on_result
        self._drift = drift
        self._estimation = estimation
        self._performance = performance
        self._registry = registry
        self._settings = settings
        self._health_window = health_window
        self._health_bucket = health_bucket
        self._claims = claims
        self._model_name = model_name
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the periodic check in a task of its own until ``stop``."""
        self._task = asyncio.create_task(self.run_forever(self._model_name), name="drift-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check_once(self, slot: datetime | None = None) -> tuple[DriftResult, str]:
        s = self._settings
        window = TimeWindow.last(s.check_window)
        result, page = await self._drift.report(window, s.check_engine, with_html=True)
        self._drift.publish(result)
        estimated = None
        if self._estimation is not None:
            span = max((window.end - window.start).total_seconds(), 1.0)
            _, estimated, _ = await self._estimation.by_bucket(
                window, span, result.model_name, result.model_version)
        run_id = await asyncio.to_thread(log_report, self._registry, result, page, slot, estimated)
        if result.insufficient:
            log.info("drift check: %s; MLflow run %s", result.reason, run_id)
        else:
            log.info("drift check: %d of %d features drifted (dataset drift: %s); MLflow run %s",
                     len(result.drifted_features), len(result.features), result.dataset_drift,
                     run_id)
        return result, run_id

    async def refresh_accuracy(self, model_name: str) -> None:
        window = TimeWindow.last(self._health_window)
        await self._performance.compute(window, self._health_bucket.timedelta, model_name)

    async def run_forever(self, model_name: str) -> None:
        """At every slot boundary: the drift check, run by the one worker that claims the slot
        (the others publish its stored result), then the accuracy gauge in every worker."""
        while True:
            slot = await sleep_until_next_slot(self._settings.check_interval_s)
            await self.run_slot(slot)
            try:
                await self.refresh_accuracy(model_name)
            except Exception:
                log.exception("accuracy refresh failed")

    async def run_slot(self, slot: datetime) -> None:
        """One slot: the check if this worker claims it, else the winner's result published;
        then the follow-up of a check run here. Nothing raised: the loop outlives any slot."""
        result: DriftResult | None = None
        try:
            if await self._claims.claim(CHECK_JOB, slot):
                result = await self._run_claimed(slot)
            else:
                await self._follow(slot)
        except DatabaseUnavailable as exc:
            log.warning("drift check skipped: %s", exc.message)
        except Exception:
            log.exception("drift check slot failed")
        if result is None or self.on_result is None:
            return
        # After the slot is finished: a long follow-up (a retraining) keeps no follower waiting.
        try:
            await self.on_result(result, await self._previous_verdict(slot))
        except DatabaseUnavailable as exc:
            log.warning("drift check follow-up skipped: %s", exc.message)
        except Exception:
            log.exception("drift check follow-up failed")

    async def _run_claimed(self, slot: datetime) -> DriftResult | None:
        outcome, report_id = "failed", None
        result: DriftResult | None = None
        try:
            result, _ = await self.check_once(slot)
            outcome, report_id = "ok", result.report_id
        except DomainError as exc:
            outcome = "skipped"
            log.info("drift check skipped: %s", exc.message)
        except Exception:
            log.exception("drift check failed")
        finally:
            await self._claims.finish(CHECK_JOB, slot, outcome, report_id)
        return result

    async def _previous_verdict(self, slot: datetime) -> bool | None:
        """The dataset-drift verdict of the latest periodic check before ``slot`` that gave one,
        looking back a few slots (None when none did: a skipped, failed or insufficient-data
        check has no verdict, and slot records live a week)."""
        interval = timedelta(seconds=self._settings.check_interval_s)
        for back in range(1, _PREVIOUS_SLOTS + 1):
            record = await self._claims.get(CHECK_JOB, slot - back * interval)
            if record is None or record.outcome != "ok" or record.report_id is None:
                continue
            body = await self._drift.stored(record.report_id)
            if body is not None and body.get("dataset_drift") is not None:
                return bool(body["dataset_drift"])
        return None

    async def _follow(self, slot: datetime) -> None:
        """Publish the winner's report here too, so every worker's and replica's gauges agree."""
        s = self._settings
        record = await self._claims.wait_finished(
            CHECK_JOB, slot, timeout_s=min(s.check_interval_s / 2, s.evidently_timeout_s + 60))
        if record is None or record.report_id is None:
            return
        body = await self._drift.stored(record.report_id)
        if body is not None:
            self._drift.publish_stored(body)
