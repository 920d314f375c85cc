"""The composition root: ``create_app(settings)`` builds the app; the lifespan wires and tears down.

Run with ``uvicorn --factory app.main:create_app_from_env`` or ``future-skills serve``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from app.config import Settings
from app.container import Container
from app.db.engine import create_engine
from app.errors import install_error_handlers
from app.metrics import ServiceMetrics
from app.middleware import RequestIdMiddleware
from app.routers import api_router
from app.services.model_service import ModelService
from app.services.prediction_log import PredictionLog
from app.services.predictions import PredictionService
from app.services.registry import ModelRegistry
from app.services.audit import PromotionAudit
from app.services.lifecycle import LifecycleService
from app.services.reloader import Reloader

log = logging.getLogger(__name__)


def _build_container(settings: Settings, metrics: ServiceMetrics) -> Container:
    settings.ensure_dirs()
    engine = create_engine(settings.db_url)
    registry = ModelRegistry(
        settings.tracking_uri, settings.registry_uri, settings.artifact_root, settings.model_cache_dir
    )
    models = ModelService(registry, settings.model, metrics)
    prediction_log = PredictionLog(engine, settings.log, metrics)
    predictions = PredictionService(models, prediction_log, metrics, settings.predict.max_items)
    audit = PromotionAudit(engine)
    return Container(
        settings=settings, metrics=metrics, engine=engine, registry=registry, models=models,
        prediction_log=prediction_log, predictions=predictions,
        reloader=Reloader(models, audit, metrics, settings.lifecycle, settings.model.poll_interval_s),
        lifecycle=LifecycleService(registry, audit, settings.model, settings.lifecycle, metrics),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = _build_container(settings, metrics)
        app.state.container = container
        await container.prediction_log.start()
        await container.reloader.start()
        try:
            yield
        finally:
            await container.reloader.stop()
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
