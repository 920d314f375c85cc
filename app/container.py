"""The services one running app holds; built by the lifespan in ``app.main``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.metrics import ServiceMetrics
from app.services.feedback import FeedbackService
from app.services.admission import Admission
from app.services.model_service import ModelService
from app.services.monitoring.drift_service import DriftService
from app.services.monitoring.health import HealthService
from app.services.monitoring.monitor import DriftMonitor
from app.services.monitoring.performance import PerformanceService
from app.services.prediction_log import PredictionLog
from app.services.predictions import PredictionService
from app.services.registry import ModelRegistry
from app.services.lifecycle import LifecycleService
from app.services.reloader import Reloader


@dataclass
class Container:
    settings: Settings
    metrics: ServiceMetrics
    engine: AsyncEngine
    registry: ModelRegistry
    models: ModelService
    prediction_log: PredictionLog
    predictions: PredictionService
    feedback: FeedbackService
    admission: Admission
    reloader: Reloader
    lifecycle: LifecycleService
    drift: DriftService
    performance: PerformanceService
    health: HealthService
    drift_monitor: DriftMonitor
    # Set on SIGTERM: readiness answers 503 while in-flight work finishes.
    draining: bool = False
