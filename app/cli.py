"""The ``future-skills`` command: serve, bootstrap, train, data, db."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.config import Settings

app = typer.Typer(help="Future Skills model service.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Synthetic data.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    settings.ensure_dirs()
    from app.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    return settings


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="CSV file to write")],
    rows: Annotated[int, typer.Option(min=1)] = 20_000,
    seed: Annotated[int, typer.Option()] = 42,
    shift: Annotated[list[str] | None, typer.Option(help="Feature to drift (repeatable)")] = None,
) -> None:
    """Write seeded synthetic training data (with labels) to a CSV file."""
    from app.ml.synthetic import generate

    df = generate(rows, seed=seed, shift=shift or ())
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    console.print(f"wrote {len(df)} rows to {out}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the Alembic migrations to DATABASE_URL (or the embedded SQLite database)."""
    from app.db.migrate import upgrade_sync

    upgrade_sync(_settings().db_url, revision)
    console.print("database schema is up to date")


def _train_with_progress(settings: Settings, **kwargs):
    from app.services.training import STAGES, train

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("training", total=len(STAGES))

        def on_stage(stage: str) -> None:
            progress.update(task, description=f"training: {stage}", completed=STAGES.index(stage))

        result = asyncio.run(train(settings, progress=on_stage, **kwargs))
        progress.update(task, description="training: done", completed=len(STAGES))
    return result


def _print_result(result) -> None:
    table = Table(title=f"{result.model_name} version {result.version} (run {result.run_id})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "f1_macro", "f1_weighted", "baseline_majority_f1_macro",
                "baseline_rules_f1_macro"):
        table.add_row(key, f"{result.metrics[key]:.4f}")
    Console().print(table)
    if result.promoted:
        console.print(f"version {result.version} is now the Production model (first version)")


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Training CSV (else synthetic data)")] = None,
    rows: Annotated[int | None, typer.Option(min=100, help="Synthetic rows to generate")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Train a model, log it to MLflow and register a new version."""
    from app.db.migrate import upgrade_sync
    from app.services.training import load_data

    settings = _settings()
    upgrade_sync(settings.db_url)
    frame = load_data(data) if data else None
    _print_result(_train_with_progress(settings, data=frame, rows=rows, seed=seed))


@app.command()
def bootstrap() -> None:
    """Migrate the database, create the experiments, and train a first model if none is Production."""
    from app.db.migrate import upgrade_sync
    from app.errors import ModelNotFound
    from app.services.registry import ModelRegistry

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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (FS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FS_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (FS_WORKERS)")] = None,
) -> None:
    """Run the HTTP service. SIGTERM shuts it down gracefully and exits 0."""
    import signal

    import uvicorn

    settings = _settings()
    # uvicorn re-raises the signal it handled once shutdown is complete; by then the service has
    # drained, so that re-raise lands in a no-op handler and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
        log_config=None,
        proxy_headers=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=int(settings.limits.shutdown_grace_s),
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
