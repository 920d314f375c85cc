"""CLI command ``score``: batch scoring of a CSV or Parquet file with the served model.

``register(app)`` adds it to the ``future-skills`` Typer app (called from ``app.cli.main``).
The work is ``app.batch_scoring``'s; this module parses options, draws the progress bar on
stderr and prints the summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from app.batch_scoring.formats import FORMATS, format_of
from app.batch_scoring.job import BatchOutcome, BatchRequest, new_batch_id, score_batch
from app.batch_scoring.record import BATCH_EXPERIMENT
from app.batch_scoring.score import Progress as OnProgress
from app.cli.context import run
from app.cli.output import console, fail
from app.cli.settings import settings_for_command
from app.container import Container
from app.db.migrate import upgrade
from app.errors import DomainError


@contextmanager
def _progress(unit: str) -> Iterator[OnProgress]:
    """A bar on stderr: rows of a Parquet file (its metadata has the count), bytes of a CSV."""
    amount = MofNCompleteColumn() if unit == "rows" else DownloadColumn()
    with Progress(TextColumn("{task.description}"), BarColumn(), amount, TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task("loading the model", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, description="scoring", completed=done, total=total)

        yield on_progress


def score(
    input_path: Annotated[Path, typer.Option("--input", help="CSV or Parquet file of feature rows")],
    output_path: Annotated[Path, typer.Option("--output", help="CSV or Parquet file to write")],
    model_version: Annotated[str | None, typer.Option(
        help="Registered version to use (default: the Production alias, as the service serves)")] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read, scored and written at a time")] = 50_000,
    input_format: Annotated[str | None, typer.Option(
        help="csv or parquet (default: from the input's extension)")] = None,
    output_format: Annotated[str | None, typer.Option(
        help="csv or parquet (default: from the output's extension)")] = None,
    log_predictions: Annotated[bool, typer.Option(
        help="Also write every scored row to the prediction log (protocol batch)")] = False,
) -> None:
    """Score a file: every input column plus level, score and prob_LOW/MEDIUM/HIGH per row.

    The run is recorded in MLflow (experiment future-skills-prediction). On a bad input the
    command exits 2 naming the column and row, and no output file is left behind; while the
    model is suspended (`models suspend`) it exits 2 with the reason and scores nothing.
    """
    for fmt, hint in ((input_format, "--input-format"), (output_format, "--output-format")):
        if fmt is not None and fmt not in FORMATS:
            raise typer.BadParameter("must be csv or parquet", param_hint=hint)
    settings = settings_for_command()
    try:
        request = BatchRequest(
            input_path=input_path, output_path=output_path,
            input_format=format_of(input_path, input_format),
            output_format=format_of(output_path, output_format),
            chunk_rows=chunk_rows, model_version=model_version,
        )
    except DomainError as exc:
        fail(exc)

    batch_id = new_batch_id()

    async def work(container: Container) -> BatchOutcome:
        # The stop switch holds for files too: a suspended model scores nothing, on any path.
        await upgrade(settings.db_url)
        state = await container.stop_switch.state(settings.model.name)
        if (suspension := state.suspension) is not None:
            raise suspension.error(settings.model.name)
        sink = None
        if log_predictions:
            sink = container.prediction_log.sink
            console.print(f"prediction log: rows go in with request_id {batch_id}", soft_wrap=True)
        with _progress("rows" if request.input_format == "parquet" else "bytes") as on_progress:
            return await score_batch(request, slot=container.slot, registry=container.registry,
                                     sink=sink, batch_id=batch_id, progress=on_progress)

    try:
        outcome = run(settings, work)
    except DomainError as exc:
        fail(exc)
    done = outcome.run
    result = done.result
    console.print(f"scored {result.rows:,} rows with {done.model.name} version "
                  f"{done.model.version} in {result.seconds:.2f} s ({result.rows_per_s:,.0f} "
                  f"rows/s); wrote {done.output_path}", soft_wrap=True)
    if done.logged_predictions:
        console.print(f"prediction log: {result.rows:,} rows with request_id {outcome.batch_id}",
                      soft_wrap=True)
    console.print(f"logged to MLflow run {outcome.mlflow_run_id} (experiment {BATCH_EXPERIMENT})",
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(score)
