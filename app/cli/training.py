"""CLI commands that make model versions: ``train`` (with ``--dry-run``) and ``bootstrap``.

``register(app)`` adds them to the ``future-skills`` Typer app (called from ``app.cli.main``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.settings import settings_for_command as _settings
from app.config import Settings

console = Console(stderr=True)


def _train_with_progress(settings: Settings, dry_run: bool = False, **kwargs):
    from app.training.dry_run import dry_run as train_dry_run
    from app.training.train import STAGES, train

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("training", total=len(STAGES))

        def on_stage(stage: str) -> None:
            progress.update(task, description=f"training: {stage}", completed=STAGES.index(stage))

        if dry_run:
            result = train_dry_run(settings, progress=on_stage, **kwargs)
        else:
            result = asyncio.run(train(settings, progress=on_stage, **kwargs))
        progress.update(task, description="training: done", completed=len(STAGES))
    return result


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "f1_macro", "f1_weighted", "baseline_majority_f1_macro",
                "baseline_rules_f1_macro"):
        table.add_row(key, f"{metrics[key]:.4f}")
    return table


def _print_result(result) -> None:
    Console().print(_metrics_table(
        f"{result.model_name} version {result.version} (run {result.run_id})", result.metrics))
    if result.semver:
        Console().print(f"semver {result.semver} ({result.change_type or 'first version'})")
    if result.promoted:
        console.print(f"version {result.version} is now the Production model (first version)")


def _print_dry_run(result) -> None:
    from app.cli.lifecycle import print_decision

    Console().print(_metrics_table(f"{result.model_name} candidate (dry run)", result.metrics))
    Console().print(f"would be registered as semver {result.semver} "
                    f"({result.change_type or 'first version'})")
    print_decision(result.decision)
    if result.production is None:
        Console().print("there is no Production version: registering it would make it Production")
    Console().print("dry run: nothing changed (no MLflow run, no registered version, "
                    "no alias or tag moved)")


def train(
    data: Annotated[Path | None, typer.Option(help="Training CSV (else synthetic data)")] = None,
    rows: Annotated[int | None, typer.Option(min=100, help="Synthetic rows to generate")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    bump: Annotated[str | None, typer.Option(help="Override the detected change: major, minor, patch")] = None,
    auto_promote: Annotated[bool, typer.Option(help="Promote the new version if the policy agrees")] = False,
    dry_run: Annotated[bool, typer.Option(
        help="Train and evaluate only, then report the semver and the promotion policy's decision; "
             "nothing is logged to MLflow, registered or promoted (the registry is only read)")] = False,
) -> None:
    """Train a model, log it to MLflow and register a new version (with its semver)."""
    from app.cli.lifecycle import auto_promote as apply_policy
    from app.db.migrate import upgrade_sync
    from app.training.train import load_data

    if bump is not None and bump not in ("major", "minor", "patch"):
        raise typer.BadParameter("must be major, minor or patch", param_hint="--bump")
    settings = _settings()
    frame = load_data(data) if data else None
    if dry_run:
        _print_dry_run(_train_with_progress(settings, dry_run=True, data=frame, rows=rows,
                                            seed=seed, bump=bump))
        return
    upgrade_sync(settings.db_url)
    result = _train_with_progress(settings, data=frame, rows=rows, seed=seed, bump=bump)
    _print_result(result)
    if auto_promote and not result.promoted:
        apply_policy(settings, result.version)


def bootstrap() -> None:
    """Migrate the database, create the experiments, and train a first model if none is Production."""
    from app.db.migrate import upgrade_sync
    from app.errors import ModelNotFound
    from app.registry.client import ModelRegistry

    settings = _settings()
    upgrade_sync(settings.db_url)
    registry = ModelRegistry(
        settings.tracking_uri, settings.registry_uri, settings.artifact_root, settings.model_cache_dir
    )
    registry.ensure_experiments()
    try:
        ref = registry.resolve(settings.model.name, settings.model.alias, settings.model.stage_fallback)
        console.print(f"{ref.name} version {ref.version} is Production; nothing to train")
    except ModelNotFound:
        console.print("no Production model yet: training the demo model")
        _print_result(_train_with_progress(settings))


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(bootstrap)
