"""Retraining proposals: read, approve (a promotion through the policy), reject; and the drift
trigger that files one when the periodic check sees dataset drift (docs/retraining.md).

A proposal is decided once. Approval is ``LifecycleService.promote``: the policy judges the
candidate and the promotion audit records the move or the refusal; a refused proposal stays open
with the refusal in its detail. Rejection writes its audit row (action ``reject-proposal``) in the
transaction that marks the proposal, so neither exists without the other. Either decision drops
the challenger alias when it still points at the candidate.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.session import read_only, unit_of_work
from app.db.tables import RetrainingProposal
from app.errors import InvalidInput, NotEnoughFeedback, PromotionRefused, ProposalDecided, ProposalNotFound
from app.lifecycle.audit import AuditEntry
from app.lifecycle.service import LifecycleService, MoveResult
from app.registry.client import ModelRegistry
from app.training.retrain import APPROVED, OPEN, REJECTED, Proposal, retrain

if TYPE_CHECKING:  # training sits beside monitoring: the drift result is only a type here
    from app.monitoring.result import DriftResult

log = logging.getLogger(__name__)

STATUSES = (OPEN, APPROVED, REJECTED)
REJECT_ACTION = "reject-proposal"
DRIFT_ACTOR = "drift-check"  # who sets the challenger alias for a drift-triggered proposal
_UNREADABLE = "retraining proposals cannot be read right now"
_UNWRITABLE = "the retraining proposal cannot be changed right now; retry shortly"


class ProposalService:
    def __init__(self, *, engine: AsyncEngine, registry: ModelRegistry,
                 lifecycle: LifecycleService, settings: Settings) -> None:
        # These four are also what retraining needs (``TrainingComponents``): on_drift passes self.
        self.engine = engine
        self.registry = registry
        self.lifecycle = lifecycle
        self.settings = settings

    # -- reads -----------------------------------------------------------------------------------
    async def list(self, name: str, *, status: str | None = None, limit: int = 100) -> list[Proposal]:
        """Newest first, at most ``limit``, optionally only those with ``status``."""
        if status is not None and status not in STATUSES:
            raise InvalidInput("unknown proposal status", [
                {"field": "status", "type": "enum", "message": f"one of {', '.join(STATUSES)}"}])
        t = RetrainingProposal.__table__
        stmt = select(t).where(t.c.model_name == name).order_by(t.c.created_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(t.c.status == status)
        async with read_only(self.engine, _UNREADABLE) as conn:
            return [Proposal.from_row(row) for row in (await conn.execute(stmt)).mappings()]

    async def get(self, name: str, proposal_id: uuid.UUID) -> Proposal:
        t = RetrainingProposal.__table__
        stmt = select(t).where(t.c.id == proposal_id, t.c.model_name == name)
        async with read_only(self.engine, _UNREADABLE) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise ProposalNotFound(f"no retraining proposal with this id for model {name!r}")
        return Proposal.from_row(row)

    # -- decisions ------------------------------------------------------------------------------
    async def approve(self, name: str, proposal_id: uuid.UUID, *, actor: str,
                      reason: str | None) -> tuple[Proposal, MoveResult]:
        """Promote the candidate through the policy. Refused: the proposal stays open, the
        refusal is kept in its detail and ``PromotionRefused`` (the policy's reason) is raised."""
        proposal = _undecided(await self.get(name, proposal_id))
        try:
            move = await self.lifecycle.promote(name, proposal.model_version, actor=actor,
                                                reason=_audit_reason(proposal, reason))
        except PromotionRefused as exc:
            await self._note_refusal(proposal, actor, exc.message)
            raise
        decided = await self._decide(proposal, APPROVED, actor, reason)
        await self._drop_challenger(proposal, actor)
        return decided, move

    async def reject(self, name: str, proposal_id: uuid.UUID, *, actor: str,
                     reason: str | None) -> Proposal:
        proposal = _undecided(await self.get(name, proposal_id))
        production = await self.lifecycle.production(name)
        audit = AuditEntry(name, actor, REJECT_ACTION, production.version if production else None,
                           proposal.model_version, _audit_reason(proposal, reason), "success",
                           f"retraining proposal {proposal.id} rejected")
        decided = await self._decide(proposal, REJECTED, actor, reason, audit=audit)
        log.info("audit: %s %s of version %s by %s", name, REJECT_ACTION, proposal.model_version,
                 actor)
        await self._drop_challenger(proposal, actor)
        return decided

    async def _decide(self, proposal: Proposal, status: str, actor: str, reason: str | None,
                      audit: AuditEntry | None = None) -> Proposal:
        """Mark the proposal decided, only if it is still open (a concurrent decision wins once);
        ``audit`` commits with it."""
        t = RetrainingProposal
        values = {"status": status, "decided_at": datetime.now(UTC), "decided_by": actor,
                  "decision_reason": reason}
        async with unit_of_work(self.engine, _UNWRITABLE) as conn:
            changed = await conn.execute(
                update(t).where(t.id == proposal.id, t.status == OPEN).values(**values))
            if changed.rowcount == 0:
                raise ProposalDecided(f"retraining proposal {proposal.id} was decided meanwhile")
            if audit is not None:
                await self.lifecycle.audit.record_on(conn, audit)
        return Proposal(**{**vars(proposal), **values})

    async def _note_refusal(self, proposal: Proposal, actor: str, message: str) -> None:
        t = RetrainingProposal
        refusal = {"at": datetime.now(UTC).isoformat(), "by": actor, "reason": message}
        detail = {**proposal.detail, "refusals": [*proposal.detail.get("refusals", []), refusal]}
        async with unit_of_work(self.engine, _UNWRITABLE) as conn:
            await conn.execute(update(t).where(t.id == proposal.id).values(detail=detail))

    async def _drop_challenger(self, proposal: Proposal, actor: str) -> None:
        """Clear the challenger alias (audited) if it still points at the decided candidate.
        Best effort: the decision stands either way, and an admin can clear it by hand."""
        name = proposal.model_name
        try:
            if await self.lifecycle.challenger(name) == proposal.model_version:
                await self.lifecycle.clear_challenger(
                    name, actor=actor, reason=f"retraining proposal {proposal.id} decided")
        except Exception as exc:
            log.warning("model %s: the challenger alias could not be cleared from version %s (%s)",
                        name, proposal.model_version, type(exc).__name__)

    # -- the drift trigger ------------------------------------------------------------------------
    async def on_drift(self, result: DriftResult, previous_drift: bool | None) -> Proposal | None:
        """After a periodic drift check (``DriftMonitor``'s follow-up): retrain with trigger
        ``drift`` when the check found dataset drift and it starts a drift episode, i.e. the
        previous periodic verdict (``previous_drift``) was not drift. With no previous verdict
        kept, any open drift-triggered proposal counts as this episode's."""
        if not self.settings.retrain.on_drift or result.dataset_drift is not True:
            return None
        if result.model_name != self.settings.model.name:
            return None
        if previous_drift:
            log.info("drift persists: this drift episode's retraining was already considered")
            return None
        if previous_drift is None and await self._open_drift_proposal(result.model_name):
            log.info("drift: an open drift-triggered proposal exists; none filed")
            return None
        try:
            proposal = await retrain(self, trigger="drift", actor=DRIFT_ACTOR,
                                     detail={"drift_report_id": result.report_id})
        except NotEnoughFeedback as exc:
            log.warning("drift detected but no retraining: %s", exc.message)
            return None
        return proposal

    async def _open_drift_proposal(self, name: str) -> bool:
        t = RetrainingProposal.__table__
        stmt = select(t.c.id).where(t.c.model_name == name, t.c.trigger == "drift",
                                    t.c.status == OPEN).limit(1)
        async with read_only(self.engine, _UNREADABLE) as conn:
            return (await conn.execute(stmt)).first() is not None


def _undecided(proposal: Proposal) -> Proposal:
    if proposal.status != OPEN:
        raise ProposalDecided(f"retraining proposal {proposal.id} is already {proposal.status}")
    return proposal


def _audit_reason(proposal: Proposal, reason: str | None) -> str:
    """The audit's reason names the proposal, so the row leads back to it."""
    return f"retraining proposal {proposal.id}" + (f": {reason}" if reason else "")
