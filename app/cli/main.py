"""The ``future-skills`` command: serve, data, db, spool here; train/bootstrap/retrain
(``training``), drift (``monitoring``), the lifecycle commands (``lifecycle``, ``runs``) and the
retraining proposals (``proposals``) are registered from their modules. Every command's
components come from ``app.container.build`` (``context.run``)."""

from __future__ import annotations

import app.import_order as _import_order  # noqa: F401  # before any other: see its docstring

# isort: split

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli.context import run
from app.cli.lifecycle import register as register_lifecycle_commands
from app.cli.monitoring import register as register_monitoring_commands
from app.cli.proposals import register as register_proposal_commands
from app.cli.scoring import register as register_scoring_commands
from app.cli.settings import settings_for_command
from app.cli.training import register as register_training_commands
from app.container import Container
from app.prediction_log.erasure import ErasureReport
from app.prediction_log.retention import Removed
from app.registry.client import quiet_mlflow

app = typer.Typer(help="Future Skills model service.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Synthetic data.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
spool_app = typer.Typer(help="The local prediction spool.", no_args_is_help=True)
app.add_typer(spool_app, name="spool")
console = Console(stderr=True)


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

    upgrade_sync(settings_for_command().db_url, revision)
    console.print("database schema is up to date")


@db_app.command("purge")
def db_purge(
    older_than: Annotated[str, typer.Option(help="Age of the rows to delete, e.g. 200d, 12h, 30w")],
    dry_run: Annotated[bool, typer.Option(help="Only count what would be deleted")] = False,
    force: Annotated[bool, typer.Option(
        help="Delete records younger than the minimum retention (FS_RETENTION_MIN_AGE) too")] = False,
) -> None:
    """Delete predictions older than the given age, with their feedback, reviews and explanations;
    never records younger than FS_RETENTION_MIN_AGE (default 180d) unless --force."""
    from app.prediction_log.retention import RetentionRefused, check_minimum, parse_age, purge_older_than

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    settings = settings_for_command()
    minimum = settings.retention.min_age
    try:
        check_minimum(age, minimum.timedelta, force=force)
    except RetentionRefused as exc:
        if not dry_run:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(2) from None
        console.print(f"note: without --dry-run this would be refused ({exc.message})")
    else:
        if age < minimum.timedelta and not dry_run:
            console.print(f"[bold red]--force: deleting records younger than the minimum retention "
                          f"FS_RETENTION_MIN_AGE={minimum}: every prediction older than {older_than} "
                          f"and its feedback, reviews and explanations are deleted for good[/bold red]")

    async def work(container: Container) -> Removed:
        return await purge_older_than(container.engine, age, minimum=minimum.timedelta, force=force,
                                      dry_run=dry_run)

    removed = run(settings, work)
    verb = "would delete (dry run)" if dry_run else "deleted"
    console.print(f"{verb} {removed.prediction} predictions, {removed.prediction_feedback} feedback rows, "
                  f"{removed.prediction_review} reviews and {removed.prediction_explanation} "
                  f"explanations older than {older_than}", soft_wrap=True)


@db_app.command("erase-subject")
def db_erase_subject(
    subject_id: Annotated[str, typer.Argument(
        help="The subject's raw id, as clients send it in subject_id (never stored or printed); "
        "`-` reads it from stdin (kept out of the shell history and the process list)")],
    actor_name: Annotated[str | None, typer.Option(
        "--actor", help="Who erases, for the audit (default cli:<os user>)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be removed")] = False,
) -> None:
    """Erase everything about one subject: the predictions made about them (found by the
    pseudonym the service stores) with their feedback, reviews and explanations. The erasure is
    recorded in subject_erasure with the pseudonym, never the raw id."""
    from app.cli.context import actor
    from app.prediction_log.erasure import erase_subject, pseudonym
    from app.serving.codecs.hygiene import text_problem

    if subject_id == "-":
        subject_id = sys.stdin.readline().rstrip("\r\n")
    who = actor_name or actor()
    for value, name, limit in ((subject_id, "SUBJECT_ID", 200), (who, "--actor", 100)):
        problem = "must not be empty" if not value else text_problem(value, limit)
        if problem:  # the value itself is never echoed
            raise typer.BadParameter(problem, param_hint=name)
    settings = settings_for_command()
    key = settings.privacy.subject_hmac_key.get_secret_value().encode()
    hashed = pseudonym(key, subject_id)
    if not (yes or dry_run) and not typer.confirm(
            f"erase every record of the subject with pseudonym {hashed}?", err=True):
        raise typer.Exit(1)

    async def work(container: Container) -> ErasureReport:
        return await erase_subject(container.engine, subject_key=key, subject_id=subject_id, actor=who,
                                   clock_skew=timedelta(seconds=settings.spool.clock_skew_s),
                                   dry_run=dry_run)

    report = run(settings, work)
    console.print(f"subject pseudonym {hashed}", soft_wrap=True)
    table = Table(title="would remove (dry run)" if dry_run else "removed")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in report.removed.as_dict().items():
        table.add_row(name, str(count))
    console.print(table)
    if report.erasure_id is not None:
        console.print(f"recorded in subject_erasure ({report.erasure_id}) by {who}; records of this "
                      "subject still in a replica's spool are dropped when they are drained", soft_wrap=True)


@spool_app.command("status")
def spool_status() -> None:
    """List spool segments: size, records, how many are not yet in the database, the owner; and
    the dead letters."""
    from app.prediction_log.admin import spool_status as status_of

    settings = settings_for_command()
    status = run(settings, lambda c: status_of(c.engine, settings.spool_dir))
    table = Table(title=f"spool {settings.spool_dir}")
    for column in ("segment", "bytes", "records", "feedback", "pending", "owner"):
        table.add_column(column, justify="left" if column in ("segment", "owner") else "right",
                         no_wrap=column == "segment")
    for seg in status.segments:
        pending = "?" if seg.pending is None else str(seg.pending)
        table.add_row(seg.name, str(seg.size), str(seg.records), str(seg.feedback), pending,
                      "live" if seg.live else "orphan")
    Console().print(table)
    segs = status.segments
    orphans = [s for s in segs if not s.live]
    if status.database_reachable:
        # reachable database: every segment's pending count is known
        pending = f"{sum(s.pending or 0 for s in segs)} pending (not yet in the database)"
    else:
        pending = "pending unknown: the database is unreachable (records include rows already written)"
    dead = status.dead_letters
    Console().print(
        f"{len(segs)} segments, {sum(s.records for s in segs)} records, {pending}, "
        f"{sum(s.size for s in segs)} bytes; {len(orphans)} orphaned "
        f"({sum(s.records for s in orphans)} records); {sum(dead.values())} dead letters"
        + (" (" + ", ".join(f"{n} {kind}" for kind, n in sorted(dead.items())) + ")" if dead else ""),
        soft_wrap=True,  # one line, whatever the terminal width: scripts grep it
    )


@spool_app.command("drain")
def spool_drain() -> None:
    """Write segments left by dead workers into the database and delete them (safe to repeat)."""
    from app.prediction_log.admin import drain_orphans

    settings = settings_for_command()
    try:
        report = run(settings, lambda c: drain_orphans(c.engine, settings.spool_dir, settings.spool))
    except Exception as exc:  # the segments are kept; say why and fail
        console.print(f"drain failed ({type(exc).__name__}); segments kept, run it again later")
        raise typer.Exit(1) from None
    console.print(
        f"drained {report.rows} records from {report.segments} segments; "
        f"{report.live_skipped} segments held by live workers left alone"
        + (f"; {report.damaged} damaged lines quarantined" if report.damaged else "")
        + (f"; {report.dead_lettered} refused records dead-lettered" if report.dead_lettered else "")
        + (f"; {report.waiting} feedback records still waiting for their prediction"
           if report.waiting else ""),
        soft_wrap=True,
    )


@spool_app.command("dead-letters")
def spool_dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout")] = False,
) -> None:
    """Records the database refused: id, kind, when, the database's reason (and the line with --json)."""
    import dataclasses
    import json

    from app.prediction_log.dead_letters import DeadLetterStore

    letters = DeadLetterStore(settings_for_command().spool_dir).list()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(d) for d in letters], indent=2))
        return
    table = Table(title="dead letters")
    for column in ("id", "kind", "at", "reason"):
        table.add_column(column)
    for d in letters:
        table.add_row(d.id, d.kind, d.at, d.reason)
    Console(width=200).print(table)
    console.print(f"{len(letters)} dead letters")


def _ids_or_all(ids: list[str] | None, everything: bool) -> list[str] | None:
    import uuid

    if bool(ids) == everything:
        console.print("name dead-letter ids, or --all")
        raise typer.Exit(2)
    try:
        return None if everything else [str(uuid.UUID(i)) for i in ids or ()]
    except ValueError:
        console.print("dead-letter ids are UUIDs (see `spool dead-letters`)")
        raise typer.Exit(2) from None


@spool_app.command("replay")
def spool_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
) -> None:
    """Write dead letters to the database again; those still refused stay, with the new reason."""
    from app.prediction_log.admin import replay

    wanted = _ids_or_all(ids, everything)
    settings = settings_for_command()
    try:
        report = run(settings, lambda c: replay(c.engine, settings.spool_dir, settings.spool, wanted))
    except Exception as exc:
        console.print(f"replay failed ({type(exc).__name__}); dead letters kept, run it again later")
        raise typer.Exit(1) from None
    for rid, reason in report.still_refused:
        console.print(f"still refused: {rid}: {reason}", soft_wrap=True)
    for rid in report.unknown:
        console.print(f"no dead letter {rid}")
    console.print(f"replayed {len(report.written)} records; {len(report.still_refused)} still refused")
    if report.still_refused or report.unknown:
        raise typer.Exit(1)


@spool_app.command("discard")
def spool_discard(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
) -> None:
    """Delete dead letters for good (the records are then not in the prediction log)."""
    from app.prediction_log.dead_letters import DeadLetterStore

    wanted = _ids_or_all(ids, everything)
    store = DeadLetterStore(settings_for_command().spool_dir)
    if wanted is None:
        wanted = [d.id for d in store.list()]
    removed = store.remove(wanted)
    for rid in sorted(set(wanted) - set(removed)):
        console.print(f"no dead letter {rid}")
    console.print(f"discarded {len(removed)} dead letters")
    if len(removed) != len(wanted):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (FS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FS_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (FS_WORKERS)")] = None,
) -> None:
    """Run the HTTP service. SIGTERM shuts it down gracefully and exits 0."""
    import signal

    import uvicorn

    from app.api.server import NoDelayHttpProtocol, prepare_multiprocess_dir
    from app.serving.siblings import WORKER_COUNT_ENV

    settings = settings_for_command()
    workers = workers or settings.server.workers
    if workers > 1 or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Before any worker starts: each one writes its metric files there, /metrics sums them.
        prepare_multiprocess_dir(settings.data_dir)
    # uvicorn re-raises the signal it handled once shutdown is complete; by then the service has
    # drained, so that re-raise lands in a no-op handler and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # The workers inherit it: each is ready only once all of them serve a model (app.serving.siblings).
    os.environ[WORKER_COUNT_ENV] = str(workers)
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers,
        http=NoDelayHttpProtocol,
        log_config=None,
        access_log=settings.server.access_log,
        proxy_headers=False,
        loop="uvloop",
        timeout_graceful_shutdown=int(settings.limits.shutdown_grace_s),
    )


register_training_commands(app)
register_lifecycle_commands(app)
register_monitoring_commands(app)
register_scoring_commands(app)
register_proposal_commands(app)


def main() -> None:
    quiet_mlflow()  # before any command imports MLflow's clients
    app()
