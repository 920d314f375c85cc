"""``future-skills models challenger``: show how the challenger compares with Production, or
point the challenger alias at a version / remove it (audited like promotions)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.context import actor, run
from app.cli.output import fail, out, print_wide
from app.cli.settings import settings_for_command
from app.config import parse_duration
from app.container import Container
from app.db.migrate import upgrade
from app.errors import DomainError
from app.ml.features import LEVELS
from app.monitoring.windows import TimeWindow


def challenger(
    set_version: Annotated[str | None, typer.Option(
        "--set", help="Point the challenger alias at this version (serving workers load it)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the challenger alias")] = False,
    reason: Annotated[str | None, typer.Option(help="Kept in the audit (with --set/--clear)")] = None,
    last: Annotated[str, typer.Option(help="Window of the comparison, e.g. 7d, 30d")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """The challenger against Production on the rows it shadow-scored (agreement, confusion,
    accuracy on feedback, label-free estimates, latency); or change it with --set / --clear."""
    if set_version is not None and clear:
        raise typer.BadParameter("give --set or --clear, not both", param_hint="--set")
    try:
        window = TimeWindow.last(parse_duration(last))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--last") from None
    settings = settings_for_command()
    name = settings.model.name

    async def work(container: Container) -> dict[str, Any] | str:
        lifecycle = container.lifecycle
        if set_version is not None or clear:
            await upgrade(settings.db_url)  # the change writes an audit row
        if set_version is not None:
            previous = await lifecycle.set_challenger(name, set_version, actor=actor(), reason=reason)
            return f"challenger of {name}: version {set_version} (was {previous or 'none'})"
        if clear:
            previous = await lifecycle.clear_challenger(name, actor=actor(), reason=reason)
            return f"challenger of {name} removed (was {previous or 'none'})"
        version = await lifecycle.challenger(name)
        if version is None:
            return f"{name} has no challenger (alias {lifecycle.challenger_alias!r} is not set)"
        report = await container.challenger_comparison.compare(name, version, window)
        return report.to_dict()

    try:
        result = run(settings, work)
    except DomainError as exc:
        fail(exc)
    if isinstance(result, str):
        out.print(result)
    elif as_json:
        out.print_json(json.dumps(result))
    else:
        _print_comparison(result)


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _print_comparison(report: dict[str, Any]) -> None:
    agreement = report["agreement_rate"]
    out.print(f"challenger version {report['challenger_version']} shadowing Production "
              f"{', '.join(report['champion_versions']) or '-'}: {report['rows_shadow_scored']} rows "
              f"shadow-scored, agreement {_figure(agreement) or '-'}, "
              f"{report['rows_with_feedback']} with feedback, {report['canary_predictions']} "
              "canary predictions")
    table = Table(title="levels: Production (rows) x challenger (columns)")
    table.add_column("Production")
    for level in LEVELS:
        table.add_column(level, justify="right")
    for level in LEVELS:
        table.add_row(level, *(str(report["confusion"][level][other]) for other in LEVELS))
    print_wide(table)
    sides = Table(title="on the same rows")
    for column in ("model", "accuracy (feedback)", "macro-F1 (feedback)", "accuracy (estimated)",
                   "macro-F1 (estimated)", "p50 ms", "p95 ms"):
        sides.add_column(column)
    for label, side in (("Production", report["champion"]), ("challenger", report["challenger"])):
        feedback, estimated = side["feedback"] or {}, side["estimated"] or {}
        sides.add_row(label, _figure(feedback.get("accuracy")), _figure(feedback.get("f1_macro")),
                      _figure(estimated.get("accuracy")), _figure(estimated.get("f1_macro")),
                      _figure(side["latency"]["p50_ms"]), _figure(side["latency"]["p95_ms"]))
    print_wide(sides)
