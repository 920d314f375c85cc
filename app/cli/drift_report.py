"""``future-skills drift``: the same report as the service's periodic check, from a shell."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.container import Container
from app.monitoring.periodic_check import log_report
from app.monitoring.result import DriftResult
from app.monitoring.windows import TimeWindow


async def run_drift_command(container: Container, last: str, engine: str, html: Path | None,
                            mlflow_log: bool) -> tuple[DriftResult, str | None]:
    """Load Production into the container's slot, report on the window ``last``, write the HTML
    page and log the report to MLflow if asked; (result, MLflow run id or None)."""
    await container.slot.load_production()
    window = TimeWindow.resolve(None, None, last, last)
    result, page = await container.drift.report(window, engine, with_html=bool(html) or mlflow_log)
    if html:
        if page is None:
            raise RuntimeError("the drift report came back without its HTML page")
        await asyncio.to_thread(_write, html, page)
    run_id = (await asyncio.to_thread(log_report, container.registry, result, page)
              if mlflow_log else None)
    return result, run_id


def _write(path: Path, page: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
