"""CLI commands of the model lifecycle: promote, rollback, models list / archive / suspend / resume /
challenger.

``register(app)`` adds them (and the runs and cleanup commands) to the ``future-skills`` Typer
app. Promote and rollback go through the container's ``LifecycleService``, the one the admin API
uses, so they apply the same policy and write the same audit rows (actor ``cli:<os user>``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli.challenger import challenger
from app.cli.context import actor, run, run_change
from app.cli.output import out, print_decision, print_wide
from app.cli.runs import register as register_run_commands
from app.cli.settings import settings_for_command
from app.container import Container
from app.errors import PromotionRefused
from app.lifecycle.describe import describe
from app.lifecycle.suspension import SwitchResult
from app.registry.housekeeping import Housekeeping

models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


async def apply_policy(container: Container, version: str) -> None:
    """After training: apply the policy's decision to the new version (``train --dry-run`` never
    registers one, so it never gets here)."""
    try:
        result = await container.lifecycle.promote(
            container.settings.model.name, version, actor=actor(),
            reason="auto-promotion after training", action="auto")
    except PromotionRefused as exc:
        out.print(f"not promoted: {exc.message}")
        return
    if result.decision is not None:
        print_decision(result.decision)
    out.print(f"version {version} is now Production (was {result.from_version})")


def promote(
    version: Annotated[str, typer.Argument(help="Registry version number")],
    reason: Annotated[str | None, typer.Option(help="Kept in the audit")] = None,
    force: Annotated[bool, typer.Option(help="Skip the promotion policy")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only report the policy's decision")] = False,
) -> None:
    """Make a version Production if the promotion policy agrees."""
    settings = settings_for_command()
    name = settings.model.name

    async def work(container: Container) -> None:
        if dry_run:
            print_decision(await container.lifecycle.evaluate(name, version))
            return
        result = await container.lifecycle.promote(name, version, actor=actor(), reason=reason,
                                                   force=force)
        if result.decision:
            print_decision(result.decision)
        out.print(f"version {result.to_version} is now Production (was {result.from_version})")

    run_change(settings, work)


def rollback(reason: Annotated[str | None, typer.Option(help="Kept in the audit")] = None) -> None:
    """Undo the last move: Production goes back to the version before it (repeatable)."""
    settings = settings_for_command()

    async def work(container: Container) -> None:
        result = await container.lifecycle.rollback(settings.model.name, actor=actor(), reason=reason)
        out.print(f"rolled back: version {result.to_version} is Production (was {result.from_version})")

    run_change(settings, work)


@models_app.command("list")
def models_list(as_json: AsJson = False) -> None:
    """Every version with semver, aliases, stage, metric and run id."""
    settings = settings_for_command()
    metric = settings.lifecycle.metric

    async def work(container: Container) -> None:
        refs = await asyncio.to_thread(container.registry.list_versions, settings.model.name)
        versions = [describe(v) for v in reversed(refs)]
        if as_json:
            out.print_json(json.dumps(versions))
            return
        table = Table(title=settings.model.name)
        for column in ("version", "semver", "change", "aliases", "stage", metric, "run id", "created"):
            table.add_column(column)
        for v in versions:
            value = v["metrics"].get(metric)
            table.add_row(v["version"], v["semver"] or "", v["change_type"] or "",
                          ",".join(v["aliases"]), v["stage"] or "",
                          f"{value:.4f}" if value is not None else "", v["run_id"] or "",
                          v["created_at"] or "")
        print_wide(table)

    run(settings, work)


@models_app.command("archive")
def models_archive(
    keep: Annotated[int | None, typer.Option(
        min=1, help="Newest versions to keep (FS_LIFECYCLE_KEEP_VERSIONS)")] = None,
    apply: Annotated[bool, typer.Option(help="Archive for real (default: only report)")] = False,
) -> None:
    """Archive old versions (stage Archived, tag archived=true), keeping the newest N and Production."""
    settings = settings_for_command()

    async def work(container: Container) -> list[str]:
        return await asyncio.to_thread(
            Housekeeping(registry=container.registry).archive_versions, settings.model.name,
            settings.model.alias, keep or settings.lifecycle.keep_versions, apply=apply)

    doomed = run(settings, work)
    verb = "archived" if apply else "would archive"
    out.print(f"{verb} {len(doomed)} version(s): {', '.join(doomed) or '-'}")


def _print_switch(result: SwitchResult) -> None:
    state = result.state
    verb = ("suspended" if state.suspended else "serving") if result.changed else (
        f"unchanged: already {'suspended' if state.suspended else 'serving'}")
    table = Table(title=f"stop switch: {state.model_name}")
    for column in ("suspended", "reason", "changed by", "changed at"):
        table.add_column(column)
    table.add_row("yes" if state.suspended else "no", state.reason or "", state.changed_by or "",
                  state.changed_at.isoformat(timespec="seconds") if state.changed_at else "never")
    print_wide(table)
    out.print(f"{state.model_name}: {verb}; serving workers follow within FS_MODEL_POLL_INTERVAL_S")


@models_app.command("suspend")
def models_suspend(
    name: Annotated[str, typer.Argument(help="The served model (FS_MODEL_NAME)")],
    reason: Annotated[str, typer.Option(help="Why: every refused caller sees it; kept in the audit")],
) -> None:
    """The stop switch: every serving worker of every replica refuses predictions (503 suspended,
    with the reason) within its poll interval, until `models resume`. Audited like promotions."""
    settings = settings_for_command()

    async def work(container: Container) -> None:
        _print_switch(await container.stop_switch.suspend(name, actor=actor(), reason=reason))

    run_change(settings, work)


@models_app.command("resume")
def models_resume(
    name: Annotated[str, typer.Argument(help="The served model (FS_MODEL_NAME)")],
    reason: Annotated[str | None, typer.Option(help="Kept in the audit")] = None,
) -> None:
    """Undo `models suspend`: serving workers predict again within their poll interval."""
    settings = settings_for_command()

    async def work(container: Container) -> None:
        _print_switch(await container.stop_switch.resume(name, actor=actor(), reason=reason))

    run_change(settings, work)


models_app.command("challenger")(challenger)


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.command()(rollback)
    app.add_typer(models_app, name="models")
    register_run_commands(app)
