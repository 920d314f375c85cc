"""Console output shared by the commands: tables at their natural width, domain errors as exit 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from app.errors import DomainError
from app.lifecycle.policy import PolicyDecision

console = Console(stderr=True)
out = Console(soft_wrap=True)


def print_wide(table: Table) -> None:
    """A table at its natural width, never cut to the terminal's (or 80 columns when stdout is
    not a terminal): run ids, timestamps and names stay whole and copyable."""
    natural = Console(width=100_000).measure(table).maximum
    Console(width=max(natural, out.width), soft_wrap=True).print(table)


def fail(exc: DomainError) -> NoReturn:
    console.print(f"[red]{exc.message}[/red]")
    raise typer.Exit(2)


def print_decision(decision: PolicyDecision) -> None:
    table = Table(title=f"policy: version {decision.candidate} vs Production {decision.production}")
    table.add_column("check")
    table.add_column("passed")
    table.add_column("detail")
    for check in decision.checks:
        table.add_row(check.name, "yes" if check.passed else "no", check.detail)
    print_wide(table)
    verdict = "promote" if decision.promote else "refuse"
    out.print(f"decision: {verdict}: {decision.reason}")
