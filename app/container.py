"""The services one running app holds; built by the lifespan in ``app.main``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.lifecycle.service import LifecycleService
from app.metrics import ServiceMetrics
from app.monitoring.drift_service import DriftService
from app.monitoring.health import HealthService
from app.monitoring.performance import PerformanceService
from app.monitoring.periodic_check import DriftMonitor
from app.prediction_log.feedback import FeedbackService
from app.prediction_log.log import PredictionLog
from app.registry.client import ModelRegistry
from app.serving.admission import Admission
from app.serving.core import PredictionService
from app.serving.model_slot import ModelService
from app.serving.reloader import Reloader


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
