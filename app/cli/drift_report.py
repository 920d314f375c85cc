"""``future-skills drift``: the same report as the service's periodic check, from a shell."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.config import Settings
from app.db.engine import create_engine
from app.metrics import ServiceMetrics
from app.monitoring.drift_service import DriftService
from app.monitoring.periodic_check import log_report
from app.monitoring.result import DriftResult
from app.monitoring.windows import TimeWindow
from app.registry.client import ModelRegistry
from app.serving.model_slot import ModelSlot


async def run_drift_command(settings: Settings, last: str, engine: str, html: Path | None,
                            mlflow_log: bool) -> tuple[DriftResult, str | None]:
    db = create_engine(settings.db_url)
    registry = ModelRegistry(settings.tracking_uri, settings.registry_uri, settings.artifact_root,
                             settings.model_cache_dir)
    metrics = ServiceMetrics()
    try:
        models = ModelSlot(registry=registry, settings=settings.model, metrics=metrics)
        await models.load_production()
        drift = DriftService(db, models, settings.drift, metrics)
        window = TimeWindow.resolve(None, None, last, last)
        result, page = await drift.report(window, engine, with_html=bool(html) or mlflow_log)
        if html:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(page, encoding="utf-8")
        run_id = await asyncio.to_thread(log_report, registry, result, page) if mlflow_log else None
        return result, run_id
    finally:
        await db.dispose()
