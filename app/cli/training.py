"""CLI commands that make model versions: ``train`` (with ``--dry-run``), ``bootstrap`` and
``retrain`` (a candidate filed as a retraining proposal).

``register(app)`` adds them to the ``future-skills`` Typer app (called from ``app.cli.main``).
Training gets its components (registry, lifecycle service, engine) from the container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.context import actor, run
from app.cli.lifecycle import apply_policy
from app.cli.output import console, fail, out, print_decision
from app.cli.proposals import proposal_json
from app.cli.settings import settings_for_command
from app.container import Container
from app.db.migrate import upgrade
from app.errors import DomainError, ModelNotFound
from app.lifecycle.versioning import CHANGE_TYPES, ChangeType
from app.training.dry_run import DryRunResult, dry_run
from app.training.fit import STAGES
from app.training.fit import Progress as OnStage
from app.training.retrain import Proposal
from app.training.retrain import retrain as retrain_candidate
from app.training.train import TrainingResult, load_data
from app.training.train import train as train_version


@contextmanager
def _progress() -> Iterator[OnStage]:
    """A spinner on stderr that follows the training stages."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("training", total=len(STAGES))

        def on_stage(stage: str) -> None:
            progress.update(task, description=f"training: {stage}", completed=STAGES.index(stage))

        yield on_stage
        progress.update(task, description="training: done", completed=len(STAGES))


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "f1_macro", "f1_weighted", "baseline_majority_f1_macro",
                "baseline_rules_f1_macro"):
        table.add_row(key, f"{metrics[key]:.4f}")
    return table


def _print_result(result: TrainingResult) -> None:
    Console().print(_metrics_table(
        f"{result.model_name} version {result.version} (run {result.run_id})", result.metrics))
    if result.semver:
        Console().print(f"semver {result.semver} ({result.change_type or 'first version'})")
    if result.promoted:
        console.print(f"version {result.version} is now the Production model (first version)")


def _print_dry_run(result: DryRunResult) -> None:
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
    bump: Annotated[str | None, typer.Option(
        help="Override the detected change: major, minor, patch")] = None,
    auto_promote: Annotated[bool, typer.Option(help="Promote the new version if the policy agrees")] = False,
    dry_run_only: Annotated[bool, typer.Option(
        "--dry-run",
        help="Train and evaluate only, then report the semver and the promotion policy's decision; "
             "nothing is logged to MLflow, registered or promoted (the registry is only read)")] = False,
) -> None:
    """Train a model, log it to MLflow and register a new version (with its semver)."""
    if bump is not None and bump not in CHANGE_TYPES:
        raise typer.BadParameter("must be major, minor or patch", param_hint="--bump")
    change: ChangeType | None = next((c for c in CHANGE_TYPES if c == bump), None)
    settings = settings_for_command()
    frame = load_data(data) if data else None

    async def check(container: Container) -> None:  # touches no database, not even migrations
        with _progress() as on_stage:
            checked = await asyncio.to_thread(dry_run, settings, container.registry, data=frame,
                                              rows=rows, seed=seed, bump=change, progress=on_stage)
        _print_dry_run(checked)

    async def work(container: Container) -> None:
        await upgrade(settings.db_url)
        with _progress() as on_stage:
            result = await train_version(container, data=frame, rows=rows, seed=seed, bump=change,
                                         progress=on_stage)
        _print_result(result)
        if auto_promote and not result.promoted:
            await apply_policy(container, result.version)

    run(settings, check if dry_run_only else work)


def bootstrap() -> None:
    """Migrate the database, create the experiments, train a first model if none is Production,
    and prepare the Production version in this host's model cache (its compiled forest and
    serving bundle), so that the service starts from it."""
    settings = settings_for_command()

    async def work(container: Container) -> None:
        await upgrade(settings.db_url)
        registry, model = container.registry, settings.model
        await asyncio.to_thread(registry.ensure_experiments)
        try:
            ref = await asyncio.to_thread(registry.resolve, model.name, model.alias, model.stage_fallback)
            console.print(f"{ref.name} version {ref.version} is Production; nothing to train")
        except ModelNotFound:
            console.print("no Production model yet: training the demo model")
            with _progress() as on_stage:
                result = await train_version(container, progress=on_stage)
            _print_result(result)
        prepared = await container.slot.prepare_cache()
        console.print(f"model cache: version {prepared.version} ready, predictor {prepared.predictor}")

    run(settings, work)


def retrain(
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposal as JSON")] = False,
) -> None:
    """Train a candidate on the base data plus the logged predictions with feedback (weighted,
    FS_RETRAIN_*), register it, point the challenger alias at it and file a retraining proposal
    for a person to approve or reject (`proposals`). Nothing is promoted."""
    settings = settings_for_command()

    async def work(container: Container) -> Proposal:
        await upgrade(settings.db_url)
        with _progress() as on_stage:
            return await retrain_candidate(container, actor=actor(), progress=on_stage)

    try:
        proposal = run(settings, work)
    except DomainError as exc:
        fail(exc)
    if as_json:
        typer.echo(proposal_json(proposal))
        return
    Console().print(_metrics_table(
        f"{proposal.model_name} candidate version {proposal.model_version} (run {proposal.run_id})",
        proposal.metrics))
    weights = proposal.data["weights"]
    out.print(f"trained on {proposal.data['base_rows']} base rows (weight {weights['base']:g}) and "
              f"{proposal.data['feedback_rows']} predictions with feedback (weight "
              f"{weights['feedback']:g}) made from {proposal.window_start:%Y-%m-%d %H:%M} to "
              f"{proposal.window_end:%Y-%m-%d %H:%M} UTC")
    out.print(f"proposal {proposal.id} is open: alias {settings.challenger.alias} -> version "
              f"{proposal.model_version}; approve or reject it with `future-skills proposals`")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(bootstrap)
    app.command()(retrain)
