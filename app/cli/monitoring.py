"""CLI command ``drift``: the periodic check's report, from a shell.

``register(app)`` adds it to the ``future-skills`` Typer app (called from ``app.cli.main``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli.context import run
from app.cli.drift_report import run_drift_command
from app.cli.settings import settings_for_command
from app.container import Container
from app.errors import DomainError
from app.monitoring.result import DriftResult

console = Console(stderr=True)


def drift(
    last: Annotated[str, typer.Option(help="Window: the last 30m, 24h, 7d, ...")] = "24h",
    engine: Annotated[str, typer.Option(help="native or evidently")] = "native",
    html: Annotated[Path | None, typer.Option(help="Write the HTML report to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow",
                                             help="Log the report to production-monitoring")] = True,
) -> None:
    """Drift report of the Production model over a window: stored, logged to MLflow, printed."""
    if engine not in ("native", "evidently"):
        raise typer.BadParameter("engine must be native or evidently", param_hint="--engine")

    async def work(container: Container) -> tuple[DriftResult, str | None]:
        return await run_drift_command(container, last, engine, html, mlflow_log)

    try:
        result, run_id = run(settings_for_command(), work)
    except DomainError as exc:
        console.print(f"no drift report: {exc.message}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        table = Table(title=f"Drift of {result.model_name} version {result.model_version} "
                            f"({result.engine} engine, {result.current_rows} current vs "
                            f"{result.reference_rows} reference rows)")
        for column in ("feature", "method", "score", "threshold", "drifted"):
            table.add_column(column)
        for f in result.features:
            table.add_row(f.feature, f.method, f"{f.score:.4g}", f"{f.threshold:.4g}",
                          "yes" if f.drifted else "no")
        if result.features:
            Console().print(table)
        if result.insufficient:
            console.print(f"no drift verdict: {result.reason}")
        else:
            verdict = "DATASET DRIFT" if result.dataset_drift else "no dataset drift"
            console.print(f"{verdict}: share {result.drift_share:.2f} (threshold {result.share_threshold})")
        if result.confidence_drift:
            c = result.confidence_drift
            console.print(f"confidence {'DRIFTED' if c.drifted else 'stable'}: KS p-value "
                          f"{c.score:.4g} (threshold {c.threshold:g}), mean {c.current_mean:.3f} "
                          f"vs {c.reference_mean:.3f} on the held-out rows")
        if result.importance_drift:
            i = result.importance_drift
            shifted = [f"{f.feature} {f.change:+.2f}" for f in i.features if f.drifted]
            console.print(f"importance {'DRIFTED' if i.drifted else 'stable'} (share change "
                          f">= {i.threshold:g}{': ' + ', '.join(shifted) if shifted else ''}); "
                          "top now: " + ", ".join(f"{f.feature} {f.current_share:.2f}"
                                                  for f in i.features[:3]))
        for note in result.notes + ([f"Evidently failed: {result.fallback_reason}"]
                                    if result.fallback_reason else []):
            console.print(f"note: {note}")
    if html:
        console.print(f"HTML report written to {html}")
    if run_id:  # MLflow's own "View run" lines are suppressed (monitor.py): stdout stays JSON
        console.print(f"logged to MLflow run {run_id} (experiment production-monitoring)")


def register(app: typer.Typer) -> None:
    app.command()(drift)
