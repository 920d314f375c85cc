"""CLI commands of the model lifecycle: promote, rollback, models, runs, cleanup.

``register(app)`` adds them to the ``future-skills`` Typer app (called from ``app.cli.main``).
Promote and rollback go through the same ``LifecycleService`` as the admin API, so they apply the
same policy and write the same audit rows (actor ``cli:<os user>``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.config import Settings

console = Console(stderr=True)
out = Console(soft_wrap=True)

models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)
runs_app = typer.Typer(help="MLflow runs: search, compare, best.", no_args_is_help=True)
cleanup_app = typer.Typer(help="Housekeeping of old runs.", no_args_is_help=True)

Bump = typer.Option(help="Override the detected change type: major, minor or patch")
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _settings() -> Settings:
    from app.cli.settings import settings_for_command

    return settings_for_command()  # a bad environment: one line per problem, exit 2


def _registry(settings: Settings):
    from app.registry.client import ModelRegistry

    return ModelRegistry(settings.tracking_uri, settings.registry_uri, settings.artifact_root,
                         settings.model_cache_dir)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@asynccontextmanager
async def _lifecycle(settings: Settings):
    from app.db.engine import create_engine
    from app.db.migrate import upgrade
    from app.lifecycle.audit import PromotionAudit
    from app.lifecycle.service import LifecycleService

    await upgrade(settings.db_url)
    engine = create_engine(settings.db_url)
    try:
        yield LifecycleService(_registry(settings), PromotionAudit(engine), settings.model,
                               settings.lifecycle)
    finally:
        await engine.dispose()


def print_wide(table: Table) -> None:
    """A table at its natural width, never cut to the terminal's (or 80 columns when stdout is
    not a terminal): run ids, timestamps and names stay whole and copyable."""
    natural = Console(width=100_000).measure(table).maximum
    Console(width=max(natural, out.width), soft_wrap=True).print(table)


def _fail(exc) -> None:
    console.print(f"[red]{exc.message}[/red]")
    raise typer.Exit(2)


def print_decision(decision) -> None:
    table = Table(title=f"policy: version {decision.candidate} vs Production {decision.production}")
    table.add_column("check")
    table.add_column("passed")
    table.add_column("detail")
    for check in decision.checks:
        table.add_row(check.name, "yes" if check.passed else "no", check.detail)
    print_wide(table)
    verdict = "promote" if decision.promote else "refuse"
    out.print(f"decision: {verdict}: {decision.reason}")


def auto_promote(settings: Settings, version: str) -> None:
    """After training: apply the policy's decision to the new version (``train --dry-run`` never
    registers one, so it never gets here)."""
    from app.errors import PromotionRefused

    async def run() -> None:
        async with _lifecycle(settings) as lifecycle:
            try:
                result = await lifecycle.promote(settings.model.name, version, actor=_actor(),
                                                 reason="auto-promotion after training", action="auto")
            except PromotionRefused as exc:
                out.print(f"not promoted: {exc.message}")
                return
            print_decision(result.decision)
            out.print(f"version {version} is now Production (was {result.from_version})")

    asyncio.run(run())


def promote(
    version: Annotated[str, typer.Argument(help="Registry version number")],
    reason: Annotated[str | None, typer.Option(help="Kept in the audit")] = None,
    force: Annotated[bool, typer.Option(help="Skip the promotion policy")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only report the policy's decision")] = False,
) -> None:
    """Make a version Production if the promotion policy agrees."""
    from app.errors import DomainError

    settings = _settings()

    async def run() -> None:
        async with _lifecycle(settings) as lifecycle:
            if dry_run:
                print_decision(await lifecycle.evaluate(settings.model.name, version))
                return
            result = await lifecycle.promote(settings.model.name, version, actor=_actor(),
                                             reason=reason, force=force)
            if result.decision:
                print_decision(result.decision)
            out.print(f"version {result.to_version} is now Production (was {result.from_version})")

    try:
        asyncio.run(run())
    except DomainError as exc:
        _fail(exc)


def rollback(reason: Annotated[str | None, typer.Option(help="Kept in the audit")] = None) -> None:
    """Undo the last move: Production goes back to the version before it (repeatable)."""
    from app.errors import DomainError

    settings = _settings()

    async def run() -> None:
        async with _lifecycle(settings) as lifecycle:
            result = await lifecycle.rollback(settings.model.name, actor=_actor(), reason=reason)
            out.print(f"rolled back: version {result.to_version} is Production (was {result.from_version})")

    try:
        asyncio.run(run())
    except DomainError as exc:
        _fail(exc)


@models_app.command("list")
def models_list(as_json: AsJson = False) -> None:
    """Every version with semver, aliases, stage, metric and run id."""
    from app.lifecycle.service import describe

    settings = _settings()
    versions = [describe(v) for v in reversed(_registry(settings).list_versions(settings.model.name))]
    if as_json:
        out.print_json(json.dumps(versions))
        return
    table = Table(title=settings.model.name)
    for column in ("version", "semver", "change", "aliases", "stage", settings.lifecycle.metric, "run id", "created"):
        table.add_column(column)
    for v in versions:
        metric = v["metrics"].get(settings.lifecycle.metric)
        table.add_row(v["version"], v["semver"] or "", v["change_type"] or "", ",".join(v["aliases"]),
                      v["stage"] or "", f"{metric:.4f}" if metric is not None else "", v["run_id"] or "",
                      v["created_at"] or "")
    print_wide(table)


@models_app.command("archive")
def models_archive(
    keep: Annotated[int | None, typer.Option(min=1, help="Newest versions to keep (FS_LIFECYCLE_KEEP_VERSIONS)")] = None,
    apply: Annotated[bool, typer.Option(help="Archive for real (default: only report)")] = False,
) -> None:
    """Archive old versions (stage Archived, tag archived=true), keeping the newest N and Production."""
    from app.registry.housekeeping import Housekeeping

    settings = _settings()
    doomed = Housekeeping(_registry(settings)).archive_versions(
        settings.model.name, settings.model.alias, keep or settings.lifecycle.keep_versions, apply=apply)
    verb = "archived" if apply else "would archive"
    out.print(f"{verb} {len(doomed)} version(s): {', '.join(doomed) or '-'}")


def _print_runs(runs: list[dict], as_json: bool, metrics: list[str]) -> None:
    if as_json:
        out.print_json(json.dumps(runs))
        return
    table = Table()
    for column in ("run id", "name", "status", *metrics):
        table.add_column(column)
    for run in runs:
        table.add_row(run["run_id"], run["run_name"] or "", run["status"],
                      *(f"{run['metrics'][m]:.4f}" if m in run["metrics"] else "" for m in metrics))
    print_wide(table)


Experiment = Annotated[list[str] | None, typer.Option("--experiment", "-e", help="Experiment name (repeatable; default all)")]


@runs_app.command("search")
def runs_search(
    experiment: Experiment = None,
    filter_string: Annotated[str, typer.Option("--filter", help="MLflow filter, e.g. \"metrics.f1_macro > 0.6\"")] = "",
    order: Annotated[list[str] | None, typer.Option(help="e.g. \"metrics.f1_macro DESC\" (repeatable)")] = None,
    max_results: Annotated[int, typer.Option(min=1, max=50_000)] = 50,
    as_json: AsJson = False,
) -> None:
    """Search runs by experiment, filter and order."""
    from mlflow.exceptions import MlflowException

    from app.registry.housekeeping import Housekeeping

    settings = _settings()
    try:
        runs = Housekeeping(_registry(settings)).search(experiment, filter_string, order, max_results)
    except MlflowException as exc:
        console.print(f"[red]invalid search: {exc.message}[/red]")
        raise typer.Exit(2) from None
    _print_runs(runs, as_json, [settings.lifecycle.metric, "accuracy"])


@runs_app.command("compare")
def runs_compare(run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids")], as_json: AsJson = False) -> None:
    """Params and metrics of several runs side by side."""
    from app.registry.housekeeping import Housekeeping

    settings = _settings()
    data = Housekeeping(_registry(settings)).compare(run_ids)
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
    from app.errors import DomainError
    from app.registry.housekeeping import Housekeeping

    settings = _settings()
    try:
        run = Housekeeping(_registry(settings)).best(metric, experiment, lowest)
    except DomainError as exc:
        _fail(exc)
    _print_runs([run], as_json, [metric])


@cleanup_app.command("runs")
def cleanup_runs(
    older_than: Annotated[str, typer.Option(help="Age, e.g. 90d, 12h, 2w")] = "90d",
    experiment: Experiment = None,
    apply: Annotated[bool, typer.Option(help="Delete for real (default: dry run)")] = False,
) -> None:
    """Delete runs older than a given age (dry run by default); runs behind a model version stay."""
    from app.errors import DomainError
    from app.registry.housekeeping import Housekeeping, parse_duration

    settings = _settings()
    try:
        runs = Housekeeping(_registry(settings)).cleanup_runs(parse_duration(older_than), experiment, apply)
    except DomainError as exc:
        _fail(exc)
    verb = "deleted" if apply else "would delete (dry run; add --apply)"
    out.print(f"{verb} {len(runs)} run(s)")
    for run in runs:
        out.print(f"  {run['run_id']} {run['run_name'] or ''}")


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.command()(rollback)
    app.add_typer(models_app, name="models")
    app.add_typer(runs_app, name="runs")
    app.add_typer(cleanup_app, name="cleanup")
