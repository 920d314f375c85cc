"""The composition root: ``build(settings)`` constructs every component once, starts what the
entry point needs, and stops it all in reverse order.

Used by the HTTP lifespan (``serve=True``) and by the CLI, training, benchmarks and tests
(``serve=False``: the same objects, nothing that serves or polls is started).
"""

from __future__ import annotations

import contextlib
import gc
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.engine import create_engine
from app.db.scheduling import SlotClaims
from app.explanations.service import ExplanationService
from app.lifecycle.audit import AuditEntry, PromotionAudit
from app.lifecycle.service import LifecycleService
from app.lifecycle.suspension import StopSwitch
from app.metrics import ServiceMetrics
from app.monitoring.challenger import ChallengerComparison
from app.monitoring.drift_service import DriftService
from app.monitoring.estimation import EstimationService, VersionCalibrations
from app.monitoring.groups import GroupService
from app.monitoring.health import HealthService
from app.monitoring.performance import PerformanceService
from app.monitoring.periodic_check import DriftMonitor
from app.oversight.record import DecisionRecords
from app.oversight.reviews import ReviewService
from app.prediction_log.feedback import FeedbackService
from app.prediction_log.log import PredictionLog
from app.registry.client import ModelRegistry
from app.serving.admission import Admission
from app.serving.batching import MicroBatcher
from app.serving.challenger import ChallengerFollower
from app.serving.core import PredictionService
from app.serving.model_slot import ModelSlot
from app.serving.reloader import Reloader
from app.serving.shadow import ShadowScorer
from app.serving.siblings import SiblingWorkers
from app.training.proposals import ProposalService


@dataclass
class Container:
    settings: Settings
    metrics: ServiceMetrics
    engine: AsyncEngine
    registry: ModelRegistry
    slot: ModelSlot
    prediction_log: PredictionLog
    predictions: PredictionService
    feedback: FeedbackService
    explanations: ExplanationService
    reviews: ReviewService
    records: DecisionRecords
    admission: Admission
    reloader: Reloader
    challenger: ChallengerFollower
    shadow: ShadowScorer
    lifecycle: LifecycleService
    drift: DriftService
    performance: PerformanceService
    estimation: EstimationService
    challenger_comparison: ChallengerComparison
    groups: GroupService
    health: HealthService
    drift_monitor: DriftMonitor
    stop_switch: StopSwitch
    proposals: ProposalService
    # Set on SIGTERM: readiness answers 503 while in-flight work finishes.
    draining: bool = False


@dataclass(frozen=True)
class _ReloadFailures:
    """The reloader's failures go to the promotion audit as ``reload-failed`` rows."""

    audit: PromotionAudit

    async def reload_failed(self, *, model_name: str, actor: str, serving: str | None,
                            target: str, detail: str) -> None:
        await self.audit.record(AuditEntry(model_name, actor, "reload-failed", serving, target,
                                           None, "failed", detail))


def _construct(settings: Settings, metrics: ServiceMetrics, *, serve: bool) -> Container:
    engine = create_engine(settings.db_url)
    registry = ModelRegistry(
        tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
        artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir,
    )
    slot = ModelSlot(registry=registry, settings=settings.model, metrics=metrics,
                     siblings=SiblingWorkers.from_environment(settings.data_dir / "workers"))
    prediction_log = PredictionLog(
        engine=engine, settings=settings.spool, metrics=metrics, directory=settings.spool_dir
    )
    admission = Admission(limit=settings.limits.max_in_flight)
    batching = settings.batch
    batcher = (
        MicroBatcher(max_rows=batching.max_rows, max_wait_s=batching.max_wait_ms / 1000.0,
                     metrics=metrics, history=1000)
        if batching.enabled else None
    )
    shadow = ShadowScorer(slot=slot, engine=engine, metrics=metrics, settings=settings.challenger)
    predictions = PredictionService(
        slot=slot, prediction_log=prediction_log, metrics=metrics, admission=admission,
        max_items=settings.predict.max_items, deadline_s=settings.limits.deadline_s, batcher=batcher,
        subject_key=settings.privacy.subject_hmac_key.get_secret_value().encode(),
        review_threshold=settings.oversight.review_confidence_threshold,
        shadow=shadow, canary_percent=settings.challenger.canary_percent,
    )
    audit = PromotionAudit(engine=engine)
    feedback = FeedbackService(engine=engine, prediction_log=prediction_log)
    explanations = ExplanationService(
        engine=engine, prediction_log=prediction_log, slot=slot, registry=registry,
        settings=settings.explain, jit_cache_dir=settings.data_dir / "numba-cache",
    )
    reviews = ReviewService(engine=engine, prediction_log=prediction_log)
    drift = DriftService(engine=engine, models=slot, settings=settings.drift, metrics=metrics,
                         explanations=explanations)
    estimation = EstimationService(
        engine=engine, calibration_of=VersionCalibrations(registry=registry, slot=slot))
    groups = GroupService(engine=engine, estimation=estimation, metrics=metrics,
                          exported=tuple(settings.monitoring.group_gauges))
    challenger_comparison = ChallengerComparison(engine=engine, estimation=estimation)
    performance = PerformanceService(
        engine=engine, metrics=metrics, trend_tolerance=settings.health.trend_tolerance,
        estimation=estimation,
    )
    health = HealthService(
        engine=engine, models=slot, performance=performance, drift=drift,
        prediction_log=prediction_log, settings=settings.health,
    )
    reloader = Reloader(
        slot=slot, audit=_ReloadFailures(audit), metrics=metrics, settings=settings.lifecycle,
        interval_s=settings.model.poll_interval_s,
    )
    lifecycle = LifecycleService(
        registry=registry, audit=audit, model=settings.model, settings=settings.lifecycle,
        metrics=metrics,
        # Serving loads and serves every move's new Production here (through the reloader,
        # which audits a failed load); a CLI process serves nothing.
        slot=reloader if serve else None,
        evidence=challenger_comparison, challenger_alias=settings.challenger.alias,
    )
    proposals = ProposalService(engine=engine, registry=registry, lifecycle=lifecycle,
                                settings=settings)
    return Container(
        settings=settings, metrics=metrics, engine=engine, registry=registry, slot=slot,
        prediction_log=prediction_log, predictions=predictions, admission=admission,
        feedback=feedback, explanations=explanations, reviews=reviews,
        records=DecisionRecords(prediction_log=prediction_log, feedback=feedback, reviews=reviews,
                                explanations=explanations, registry=registry),
        reloader=reloader,
        challenger=ChallengerFollower(
            slot=slot, alias=settings.challenger.alias, metrics=metrics,
            interval_s=settings.model.poll_interval_s,
            retry_failed_s=settings.lifecycle.retry_failed_s,
        ),
        shadow=shadow,
        lifecycle=lifecycle,
        proposals=proposals,
        drift=drift,
        performance=performance,
        estimation=estimation,
        challenger_comparison=challenger_comparison,
        groups=groups,
        health=health,
        drift_monitor=DriftMonitor(
            drift=drift, performance=performance, registry=registry, settings=settings.drift,
            health_window=settings.health.window, health_bucket=settings.health.bucket,
            claims=SlotClaims(engine=engine, worker_id=f"{socket.gethostname()}/{prediction_log.worker}"),
            model_name=settings.model.name, estimation=estimation,
            # A periodic check that starts a drift episode files a retraining proposal.
            on_result=proposals.on_drift if settings.retrain.on_drift else None,
        ),
        # Serving follows the switch (and a change made here stops this worker at once); a CLI
        # process only changes it.
        stop_switch=StopSwitch(
            engine=engine, audit=audit, model_name=settings.model.name,
            interval_s=settings.model.poll_interval_s, slot=slot if serve else None, metrics=metrics,
        ),
    )


def freeze_start_up_heap() -> None:
    """Move what start-up built (modules, settings, the container and its clients) out of the
    garbage collector's sight, once per process. Every full collection walks the whole tracked
    heap again, and the heap after MLflow, pandas and scikit-learn are imported is large: a 1M-row
    drift read (~10k COPY chunks, each a few short-lived objects) spent a quarter of its client
    time in collections. Frozen objects are never collected, so garbage is collected first, and
    only the first container of a process (a test process builds many) freezes."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


@contextlib.asynccontextmanager
async def build(
    settings: Settings, *, serve: bool = False, metrics: ServiceMetrics | None = None
) -> AsyncIterator[Container]:
    """Build every component; with ``serve`` also start the service's workers, in dependency order.

    ``metrics`` lets the app factory hand in the registry it already instruments HTTP with.
    """
    settings.ensure_dirs()
    container = _construct(settings, metrics or ServiceMetrics(), serve=serve)
    freeze_start_up_heap()  # before any worker starts: a one-off full collection, ~0.1 s
    async with contextlib.AsyncExitStack() as stack:
        # Pushed first, so it runs last: nothing may touch the database after the pool is gone.
        stack.push_async_callback(container.engine.dispose)
        if serve:
            stack.callback(container.slot.siblings.forget)  # runs after the service has stopped
            await container.prediction_log.start()
            stack.push_async_callback(container.prediction_log.stop)
            await container.shadow.start()
            stack.push_async_callback(container.shadow.stop)
            await container.predictions.start()
            stack.push_async_callback(container.predictions.stop)
            # Before the reloader: the worker must know whether it may serve before it is ready.
            await container.stop_switch.start()
            stack.push_async_callback(container.stop_switch.stop)
            await container.reloader.start()
            stack.push_async_callback(container.reloader.stop)
            challenger = settings.challenger
            if challenger.shadow or challenger.canary_percent > 0:  # else no use for a second model
                await container.challenger.start()
                stack.push_async_callback(container.challenger.stop)
            await container.explanations.start()
            stack.push_async_callback(container.explanations.stop)
            if settings.drift.check_enabled:
                await container.drift_monitor.start()
                stack.push_async_callback(container.drift_monitor.stop)
        yield container

