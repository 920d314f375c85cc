"""Promote, roll back and describe model versions; every move is audited.

The registry stays the single source of truth: a promotion only moves the alias (and, behind a
setting, the legacy stage). Other workers follow through their reloader. When the container hands
in this worker's serving hand-off, a promotion loads the candidate once, through it: the policy
checks that model and, once the alias has moved, it is installed (no second load, no second
resolve); a forced move or a rollback has the new Production loaded and served the same way. Used by
the admin API, the CLI and training alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.config import LifecycleSettings, ModelSettings
from app.errors import (
    DatabaseUnavailable,
    ModelNotFound,
    ProductionChanged,
    PromotionRefused,
    RegistryUnavailable,
)
from app.lifecycle.audit import AuditCommitFailed, AuditEntry, PromotionAudit
from app.lifecycle.describe import describe
from app.lifecycle.history import (
    HISTORY_MAX,
    HISTORY_TAG,
    after_promotion,
    after_rollback,
    history_of,
    rollback_target,
)
from app.lifecycle.policy import LiveEvidence, PolicyDecision, PromotionPolicy
from app.metrics import ServiceMetrics
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import LoadedModel
from app.serving.reloader import ReloadOutcome

log = logging.getLogger(__name__)

__all__ = [  # the history helpers were defined here; kept importable from here
    "HISTORY_MAX", "HISTORY_TAG", "LifecycleService", "MoveResult", "ServingSlot", "after_promotion",
    "after_rollback", "describe", "history_of", "rollback_target",
]


class LiveEvidenceSource(Protocol):
    """Where the policy's live evidence comes from (``app.monitoring.challenger``)."""

    async def evidence(self, model_name: str, candidate: str, champion: str) -> LiveEvidence: ...


class ServingSlot(Protocol):
    """What a move needs of this worker's serving (``app.serving.reloader.Reloader``)."""

    async def load(self, ref: VersionRef) -> LoadedModel:
        """Download, load and check a version off the event loop."""
        ...

    async def install(self, model: LoadedModel) -> None:
        """Serve an already loaded and checked model from now on (one atomic swap)."""
        ...

    async def serve(self, ref: VersionRef) -> ReloadOutcome:
        """Load, check and serve ``ref``; a failure is reported, audited, never served."""
        ...


@dataclass
class MoveResult:
    model_name: str
    action: str
    from_version: str | None
    to_version: str
    decision: PolicyDecision | None = None
    # What this worker serves after the move; None when it does not serve the model (the CLI,
    # training, another model): the reloaders of the serving workers bring it.
    reload: ReloadOutcome | None = None

    @property
    def installed(self) -> bool:
        """True when this worker now serves ``to_version``."""
        return self.reload is not None and self.reload.serving == self.to_version


class LifecycleService:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        audit: PromotionAudit,
        model: ModelSettings,
        settings: LifecycleSettings,
        metrics: ServiceMetrics | None = None,
        slot: ServingSlot | None = None,
        evidence: LiveEvidenceSource | None = None,
        challenger_alias: str = "challenger",
    ) -> None:
        """``slot``: this worker's serving hand-off, which serves ``model.name`` (None in the CLI
        and training: nothing is served there)."""
        self.metrics = metrics
        self.registry = registry
        self.audit = audit
        self.model = model
        self.settings = settings
        self.slot = slot
        self.evidence = evidence
        self.challenger_alias = challenger_alias
        self.policy = PromotionPolicy(registry=registry, settings=settings)

    # -- reads ---------------------------------------------------------------------------------
    async def production(self, name: str) -> VersionRef | None:
        try:
            return await asyncio.to_thread(self.registry.resolve, name, self.model.alias,
                                           self.model.stage_fallback)
        except ModelNotFound:
            return None

    async def versions(self, name: str) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.registry.model_tags, name)  # 404 for an unknown model
        refs = await asyncio.to_thread(self.registry.list_versions, name)
        return [describe(ref) for ref in reversed(refs)]

    async def summary(self, name: str) -> dict[str, Any]:
        tags = await asyncio.to_thread(self.registry.model_tags, name)
        prod = await self.production(name)
        refs = await asyncio.to_thread(self.registry.list_versions, name)
        return {
            "name": name, "alias": self.model.alias,
            "production": describe(prod) if prod else None,
            "previous_production": rollback_target(history_of(tags), prod.version if prod else None),
            "latest_version": refs[-1].version if refs else None, "version_count": len(refs),
        }

    async def challenger(self, name: str) -> str | None:
        """The version the challenger alias names (None: not set)."""
        aliases = await asyncio.to_thread(self.registry.aliases, name)
        return aliases.get(self.challenger_alias)

    # -- the challenger (docs/improvement-loop.md) ---------------------------------------------------
    async def set_challenger(self, name: str, version: str, *, actor: str,
                             reason: str | None) -> str | None:
        """Point the challenger alias at ``version`` (serving workers load it beside Production
        within one poll interval); audited as ``challenger``. Returns the previous challenger."""
        await asyncio.to_thread(self.registry.get_version, name, version)  # 404 if unknown
        prod = await self.production(name)
        previous = await self.challenger(name)
        if prod is not None and prod.version == version:
            await self._audit(name, actor, "challenger", previous, version, reason, "refused",
                              "the version is Production")
            raise PromotionRefused(f"version {version} is the Production version, not a challenger")
        await asyncio.to_thread(self.registry.set_alias, name, self.challenger_alias, version)
        await self._audit(name, actor, "challenger", previous, version, reason, "success",
                          f"alias {self.challenger_alias!r} set")
        return previous

    async def clear_challenger(self, name: str, *, actor: str, reason: str | None) -> str | None:
        """Remove the challenger alias (shadow scoring and the canary stop); audited as
        ``challenger-cleared``. Returns the version it named (None: there was none)."""
        previous = await self.challenger(name)
        if previous is not None:
            await asyncio.to_thread(self.registry.delete_alias, name, self.challenger_alias)
            await self._audit(name, actor, "challenger-cleared", previous, None, reason, "success",
                              f"alias {self.challenger_alias!r} removed")
        return previous

    # -- moves -----------------------------------------------------------------------------------
    async def evaluate(self, name: str, version: str) -> PolicyDecision:
        """The policy's verdict on ``version`` against the current Production (no change made)."""
        candidate = await asyncio.to_thread(self.registry.get_version, name, version)
        prod = await self.production(name)
        live = await self._live_evidence(name, version, prod.version if prod else None)
        return await asyncio.to_thread(self.policy.evaluate, candidate, prod, None, live)

    async def promote(
        self, name: str, version: str, *, actor: str, reason: str | None, force: bool = False,
        action: str = "promote",
    ) -> MoveResult:
        """Make ``version`` Production if the policy agrees (or ``force``); audit either way."""
        candidate = await asyncio.to_thread(self.registry.get_version, name, version)
        prod = await self.production(name)
        from_version = prod.version if prod else None
        if from_version == candidate.version:
            await self._audit(name, actor, action, from_version, version, reason, "refused",
                              "already the Production version")
            raise PromotionRefused(f"version {version} is already the Production version")
        decision = None
        checked: LoadedModel | None = None
        if not force:
            loaded = await self._load(candidate)
            live = await self._live_evidence(name, version, from_version)
            decision = await asyncio.to_thread(self.policy.judge, candidate, prod, loaded, live)
            if not decision.promote:
                await self._audit(name, actor, action, from_version, version, reason, "refused",
                                  decision.reason)
                raise PromotionRefused(f"promotion refused: {decision.reason}")
            checked = loaded if isinstance(loaded, LoadedModel) else None
        await self._move(name, version, from_version, actor, action, reason,
                         "forced: policy skipped" if decision is None else decision.reason)
        reload = await self._install(checked) if checked is not None else await self._serve(candidate)
        return MoveResult(name, action, from_version, version, decision, reload=reload)

    async def _live_evidence(self, name: str, version: str,
                             champion: str | None) -> LiveEvidence | None:
        if not self.policy.wants_live_evidence or self.evidence is None or champion is None:
            return None
        return await self.evidence.evidence(name, version, champion)

    async def adopt_first(self, name: str, version: str, *, actor: str, reason: str,
                          detail: str) -> bool:
        """Make ``version`` Production if the model has none yet (its first version), in one
        audited move; False when a Production version exists (nothing moved)."""
        if await self.production(name) is not None:
            return False
        try:
            # No history tag: a first version has nothing to roll back to, and the next
            # promotion pushes it first (``after_promotion``).
            await self._move(name, version, None, actor, "auto", reason, detail, history=False)
        except ProductionChanged:  # another first version won the race; this try is audited as refused
            return False
        return True

    async def rollback(self, name: str, *, actor: str, reason: str | None) -> MoveResult:
        """Point Production back at the version it had before the last move; again and again."""
        prod = await self.production(name)
        current = prod.version if prod else None
        history = history_of(await asyncio.to_thread(self.registry.model_tags, name))
        target = rollback_target(history, current)
        if target is None:
            await self._audit(name, actor, "rollback", current, None, reason, "refused",
                              "no previous Production version is recorded")
            raise PromotionRefused("no previous Production version to roll back to")
        ref = await asyncio.to_thread(self.registry.get_version, name, target)  # still exists?
        await self._move(name, target, current, actor, "rollback", reason, "rolled back")
        return MoveResult(name, "rollback", current, target, reload=await self._serve(ref))

    async def _move(self, name: str, to_version: str, from_version: str | None, actor: str,
                    action: str, reason: str | None, detail: str, *, history: bool = True) -> None:
        """Move the alias inside the transaction that writes its audit row: no unaudited move.

        The database is asked first, so an audit outage refuses the move (503) with nothing
        changed; a registry failure puts back what moved, rolls the row back and audits the
        failure instead. Moves of one model are serialized by that transaction, and each checks
        that Production is still the version its decision was made against (else 409).
        """
        def move(to: str, trail: list[str]) -> None:
            self.registry.set_alias(name, self.model.alias, to)
            if history:
                self.registry.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(trail))
            if self.settings.set_legacy_stage:
                self.registry.set_legacy_stage(name, to)

        entry = AuditEntry(name, actor, action, from_version, to_version, reason, "success", detail)
        before: list[str] = []
        moving = False
        try:
            async with self.audit.recording(entry):
                # Serialized with other moves of this model: re-check what the decision assumed.
                # One read gives Production and the history tag.
                current, tags = await asyncio.to_thread(
                    self.registry.production_state, name, self.model.alias, self.model.stage_fallback)
                if current != from_version:
                    raise ProductionChanged(
                        f"Production moved to version {current} while this change was decided; retry")
                before = history_of(tags)
                after = (after_rollback(before, from_version) if action == "rollback"
                         else after_promotion(before, from_version, to_version))
                moving = True
                await asyncio.to_thread(move, to_version, after)
        except ProductionChanged as exc:
            await self._audit(name, actor, action, from_version, to_version, reason, "refused",
                              exc.message)
            raise
        except AuditCommitFailed as exc:
            await self._undo(name, from_version, before, move)
            self._count(action, "failed")
            raise DatabaseUnavailable(
                "the audit store failed while recording the change, so it was undone; "
                "retry shortly") from exc
        except DatabaseUnavailable:
            self._count(action, "failed")
            raise
        except Exception as exc:  # the registry: refused, unreachable, half-applied
            if moving:
                await self._undo(name, from_version, before, move)
            await self._audit(name, actor, action, from_version, to_version, reason, "failed",
                              f"the registry refused the change ({type(exc).__name__})")
            raise RegistryUnavailable("the model registry refused the change; nothing moved") from exc
        self._count(action, "success")

    # -- the serving hand-off ----------------------------------------------------------------------
    def _serves(self, name: str) -> bool:
        return self.slot is not None and name == self.model.name

    async def _load(self, ref: VersionRef) -> LoadedModel | Exception:
        """The candidate loaded for the policy: through the serving slot (loaded and checked as
        serving would) when this worker serves the model, else from the registry."""
        try:
            if self.slot is not None and self._serves(ref.name):
                return await self.slot.load(ref)
            return await asyncio.to_thread(self.policy.load, ref)
        except Exception as exc:  # the policy's "loads" check reports it (and refuses)
            return exc

    async def _install(self, model: LoadedModel) -> ReloadOutcome | None:
        """Hand the model the policy checked to the slot, as a reload would have served it."""
        if self.slot is None or not self._serves(model.name):
            return None
        await self.slot.install(model)
        return ReloadOutcome("reloaded", model.version, model.version)

    async def _serve(self, ref: VersionRef) -> ReloadOutcome | None:
        """Load and serve the new Production of a move the policy did not load (forced, rollback)."""
        if self.slot is None or not self._serves(ref.name):
            return None
        return await self.slot.serve(ref)

    async def _undo(self, name: str, from_version: str | None, history: list[str],
                    move: Callable[[str, list[str]], None]) -> None:
        """Put Production and its history back after a move that failed half-way (best effort:
        when this fails too, the log says the registry may hold an unaudited move)."""
        if from_version is None:
            log.error("model %s: a failed first promotion may have left the alias set", name)
            return
        try:
            await asyncio.to_thread(move, from_version, history)
            log.warning("model %s: the move failed, Production is back on %s", name, from_version)
        except Exception:
            log.exception("model %s: the move failed AND Production could not be put back on %s; "
                          "the registry may hold an unaudited move", name, from_version)

    async def _audit(self, name: str, actor: str, action: str, from_version: str | None,
                     to_version: str | None, reason: str | None, outcome: str, detail: str) -> None:
        self._count(action, outcome)
        await self.audit.record(AuditEntry(name, actor, action, from_version, to_version, reason,
                                           outcome, detail))

    def _count(self, action: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.promotions.labels(action, outcome).inc()
