"""The services one running app holds; built by the lifespan in ``app.main``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.metrics import ServiceMetrics
from app.services.model_service import ModelService
from app.services.monitoring.drift_service import DriftService
from app.services.monitoring.health import HealthService
from app.services.monitoring.monitor import DriftMonitor
from app.services.monitoring.performance import PerformanceService
from app.services.prediction_log import PredictionLog
from app.services.predictions import PredictionService
from app.services.registry import ModelRegistry


@dataclass
class Container:
    settings: Settings
    metrics: ServiceMetrics
    engine: AsyncEngine
    registry: ModelRegistry
    models: ModelService
    prediction_log: PredictionLog
    predictions: PredictionService
    drift: DriftService | None = None
    performance: PerformanceService | None = None
    health: HealthService | None = None
    drift_monitor: DriftMonitor | None = None
