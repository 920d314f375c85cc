"""CLI commands on retraining proposals: ``proposals list | approve | reject``.

``register(app)`` adds them to the ``future-skills`` Typer app (called from ``app.cli.main``).
They go through the container's ``ProposalService``, the one the admin API uses: approval is a
promotion through the policy, and both decisions are audited (actor ``cli:<os user>``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.context import actor, run, run_change
from app.cli.output import fail, out, print_decision, print_wide
from app.cli.settings import settings_for_command
from app.container import Container
from app.errors import DomainError
from app.training.proposals import STATUSES
from app.training.retrain import Proposal

proposals_app = typer.Typer(help="Retraining proposals: list, approve, reject.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
ProposalId = Annotated[str, typer.Argument(help="The proposal's id (see `proposals list`)")]
Reason = Annotated[str | None, typer.Option(help="Kept in the proposal and the audit")]


def proposal_json(proposal: Proposal) -> str:
    """The proposal as the API's ``ProposalOut`` shows it (ISO timestamps, the id as text)."""

    def encode(value: Any) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        raise TypeError(type(value).__name__)

    return json.dumps(vars(proposal), default=encode)


def print_proposals(title: str, proposals: list[Proposal], metric: str) -> None:
    table = Table(title=title)
    for column in ("id", "created", "trigger", "status", "version", "base", metric,
                   "feedback rows", "decided by"):
        table.add_column(column)
    for p in proposals:
        value = p.metrics.get(metric)
        table.add_row(str(p.id), p.created_at.isoformat(timespec="seconds"), p.trigger, p.status,
                      p.model_version, p.base_version or "",
                      f"{value:.4f}" if value is not None else "",
                      str(p.data.get("feedback_rows", "")), p.decided_by or "")
    print_wide(table)


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:  # the value is not echoed: it may be anything pasted
        raise typer.BadParameter("must be a proposal id (a UUID)", param_hint="PROPOSAL_ID") from None


@proposals_app.command("list")
def proposals_list(
    status: Annotated[str | None, typer.Option(help="Only open, approved or rejected")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: AsJson = False,
) -> None:
    """Retraining proposals of the served model, newest first."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter("must be open, approved or rejected", param_hint="--status")
    settings = settings_for_command()

    async def work(container: Container) -> None:
        found = await container.proposals.list(settings.model.name, status=status, limit=limit)
        if as_json:
            out.print_json("[" + ",".join(proposal_json(p) for p in found) + "]")
            return
        print_proposals(f"retraining proposals: {settings.model.name}", found,
                        settings.lifecycle.metric)

    try:
        run(settings, work)
    except DomainError as exc:
        fail(exc)


@proposals_app.command("approve")
def proposals_approve(proposal_id: ProposalId, reason: Reason = None) -> None:
    """Promote the proposal's candidate through the promotion policy (audited); refused: the
    policy's reason, exit 2, and the proposal stays open."""
    wanted = _parse_id(proposal_id)
    settings = settings_for_command()

    async def work(container: Container) -> None:
        proposal, move = await container.proposals.approve(settings.model.name, wanted,
                                                           actor=actor(), reason=reason)
        if move.decision is not None:
            print_decision(move.decision)
        out.print(f"proposal {proposal.id} approved: version {move.to_version} is now Production "
                  f"(was {move.from_version})")

    run_change(settings, work)


@proposals_app.command("reject")
def proposals_reject(proposal_id: ProposalId, reason: Reason = None) -> None:
    """Reject the proposal: nothing is promoted, the challenger alias leaves its candidate (audited)."""
    wanted = _parse_id(proposal_id)
    settings = settings_for_command()

    async def work(container: Container) -> None:
        proposal = await container.proposals.reject(settings.model.name, wanted, actor=actor(),
                                                    reason=reason)
        out.print(f"proposal {proposal.id} rejected: version {proposal.model_version} stays "
                  "unpromoted")

    run_change(settings, work)


def register(app: typer.Typer) -> None:
    app.add_typer(proposals_app, name="proposals")
