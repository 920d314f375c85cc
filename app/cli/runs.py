"""CLI commands on MLflow runs: search, compare, best, and the cleanup of old runs.

Registered by ``app.cli.lifecycle.register``; the registry client comes from the container.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from mlflow.exceptions import MlflowException
from rich.table import Table

from app.cli.context import run
from app.cli.output import console, fail, out, print_wide
from app.cli.settings import settings_for_command
from app.config import parse_duration
from app.container import Container
from app.errors import DomainError
from app.registry.housekeeping import Housekeeping

runs_app = typer.Typer(help="MLflow runs: search, compare, best.", no_args_is_help=True)
cleanup_app = typer.Typer(help="Housekeeping of old runs.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
Experiment = Annotated[list[str] | None, typer.Option(
    "--experiment", "-e", help="Experiment name (repeatable; default all)")]


def _print_runs(runs: list[dict[str, Any]], as_json: bool, metrics: list[str]) -> None:
    if as_json:
        out.print_json(json.dumps(runs))
        return
    table = Table()
    for column in ("run id", "name", "status", *metrics):
        table.add_column(column)
    for r in runs:
        table.add_row(r["run_id"], r["run_name"] or "", r["status"],
                      *(f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "" for m in metrics))
    print_wide(table)


@runs_app.command("search")
def runs_search(
    experiment: Experiment = None,
    filter_string: Annotated[str, typer.Option(
        "--filter", help="MLflow filter, e.g. \"metrics.f1_macro > 0.6\"")] = "",
    order: Annotated[list[str] | None, typer.Option(
        help="e.g. \"metrics.f1_macro DESC\" (repeatable)")] = None,
    max_results: Annotated[int, typer.Option(min=1, max=50_000)] = 50,
    as_json: AsJson = False,
) -> None:
    """Search runs by experiment, filter and order."""
    settings = settings_for_command()

    async def work(container: Container) -> list[dict[str, Any]]:
        return await asyncio.to_thread(Housekeeping(registry=container.registry).search, experiment,
                                       filter_string, order, max_results)

    try:
        found = run(settings, work)
    except MlflowException as exc:
        console.print(f"[red]invalid search: {exc.message}[/red]")
        raise typer.Exit(2) from None
    _print_runs(found, as_json, [settings.lifecycle.metric, "accuracy"])


@runs_app.command("compare")
def runs_compare(run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids")],
                 as_json: AsJson = False) -> None:
    """Params and metrics of several runs side by side."""

    async def work(container: Container) -> dict[str, Any]:
        return await asyncio.to_thread(Housekeeping(registry=container.registry).compare, run_ids)

    data = run(settings_for_command(), work)
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(title="runs compared")
    table.add_column("")
    for run_id in data["runs"]:
        table.add_column(run_id[:12])
    for kind in ("params", "metrics"):
        for key, values in data[kind].items():
            cells = [("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)) for v in values]
            table.add_row(f"{kind[:-1]} {key}", *cells)
    print_wide(table)


@runs_app.command("best")
def runs_best(
    metric: Annotated[str, typer.Option(help="Metric to rank by")] = "f1_macro",
    experiment: Experiment = None,
    lowest: Annotated[bool, typer.Option(help="Lower is better (e.g. a loss)")] = False,
    as_json: AsJson = False,
) -> None:
    """The run with the best value of a metric."""

    async def work(container: Container) -> dict[str, Any]:
        return await asyncio.to_thread(Housekeeping(registry=container.registry).best, metric, experiment,
                                       lowest)

    try:
        best = run(settings_for_command(), work)
    except DomainError as exc:
        fail(exc)
    _print_runs([best], as_json, [metric])


@cleanup_app.command("runs")
def cleanup_runs(
    older_than: Annotated[str, typer.Option(help="Age, e.g. 90d, 12h, 2w")] = "90d",
    experiment: Experiment = None,
    apply: Annotated[bool, typer.Option(help="Delete for real (default: dry run)")] = False,
) -> None:
    """Delete runs older than a given age (dry run by default); runs behind a model version stay."""
    try:  # the settings' grammar; 0s (everything) is allowed, as for `db purge`
        age_s = parse_duration(older_than, allow_zero=True).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    settings = settings_for_command()

    async def work(container: Container) -> list[dict[str, Any]]:
        return await asyncio.to_thread(Housekeeping(registry=container.registry).cleanup_runs,
                                       age_s, experiment, apply)

    try:
        deleted = run(settings, work)
    except DomainError as exc:
        fail(exc)
    verb = "deleted" if apply else "would delete (dry run; add --apply)"
    out.print(f"{verb} {len(deleted)} run(s)")
    for r in deleted:
        out.print(f"  {r['run_id']} {r['run_name'] or ''}")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
    app.add_typer(cleanup_app, name="cleanup")
