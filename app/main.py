"""The composition root: ``create_app(settings)`` builds the app; the lifespan wires and tears down.

Run with ``uvicorn --factory app.main:create_app_from_env`` or ``future-skills serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from app.config import Settings
from app.container import Container
from app.db.engine import create_engine
from app.errors import DomainError, install_error_handlers
from app.metrics import ServiceMetrics
from app.middleware import RequestIdMiddleware
from app.routers import api_router
from app.services.model_service import ModelService
from app.services.monitoring.drift_service import DriftService
from app.services.monitoring.health import HealthService
from app.services.monitoring.monitor import DriftMonitor
from app.services.monitoring.performance import PerformanceService
from app.services.prediction_log import PredictionLog
from app.services.predictions import PredictionService
from app.services.registry import ModelRegistry

log = logging.getLogger(__name__)


async def _follow_registry(models: ModelService, interval: float) -> None:
    """Keep serving whatever the registry marks as Production; a failed attempt keeps the old one."""
    while True:
        try:
            await models.load_production()
        except DomainError as exc:
            log.warning("no Production model could be loaded: %s", exc.message)
        except Exception:
            log.exception("loading the Production model failed; still serving the previous one")
        await asyncio.sleep(interval)


def _build_container(settings: Settings, metrics: ServiceMetrics) -> Container:
    settings.ensure_dirs()
    engine = create_engine(settings.db_url)
    registry = ModelRegistry(
        settings.tracking_uri, settings.registry_uri, settings.artifact_root, settings.model_cache_dir
    )
    models = ModelService(registry, settings.model, metrics)
    prediction_log = PredictionLog(engine, settings.log, metrics)
    predictions = PredictionService(models, prediction_log, metrics, settings.predict.max_items)
    container = Container(
        settings=settings, metrics=metrics, engine=engine, registry=registry, models=models,
        prediction_log=prediction_log, predictions=predictions,
    )
    _add_monitoring(container)
    return container


def _add_monitoring(c: Container) -> None:
    """Drift, performance and health services (issue 5)."""
    s = c.settings
    c.drift = DriftService(c.engine, c.models, s.drift, c.metrics)
    c.performance = PerformanceService(c.engine, c.metrics, s.health.trend_tolerance)
    c.health = HealthService(c.engine, c.models, c.performance, c.drift, c.prediction_log, s.health)
    c.drift_monitor = DriftMonitor(c.drift, c.performance, c.registry, s.drift, s.health.window,
                                   s.health.bucket)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = _build_container(settings, metrics)
        app.state.container = container
        await container.prediction_log.start()
        follower = asyncio.create_task(
            _follow_registry(container.models, settings.model.poll_interval_s), name="registry-poller"
        )
        drift_check = None
        if settings.drift.check_enabled:
            drift_check = asyncio.create_task(
                container.drift_monitor.run_forever(settings.model.name), name="drift-check"
            )
        try:
            yield
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            if drift_check is not None:
                drift_check.cancel()
                await asyncio.gather(drift_check, return_exceptions=True)
            await container.prediction_log.stop()
            await container.engine.dispose()

    app = FastAPI(
        title="Future Skills model service",
        version="0.1.0",
        summary="Serves the Production future-skills model, logs every prediction, follows the registry.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(api_router)
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(app)
    app.add_middleware(RequestIdMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment."""
    from app.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
