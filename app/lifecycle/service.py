"""Promote, roll back and describe model versions; every move is audited.

The registry stays the single source of truth: a promotion only moves the alias (and, behind a
setting, the legacy stage). Serving follows through the reloader, in every worker. Used by the
admin API and by the CLI alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from app.config import LifecycleSettings, ModelSettings
from app.errors import (
    DatabaseUnavailable,
    ModelNotFound,
    ProductionChanged,
    PromotionRefused,
    RegistryUnavailable,
)
from app.lifecycle.audit import AuditCommitFailed, AuditEntry, PromotionAudit
from app.lifecycle.policy import PolicyDecision, PromotionPolicy
from app.metrics import ServiceMetrics
from app.registry.client import ModelRegistry, VersionRef

log = logging.getLogger(__name__)

# The registered model tag holding the Production versions our moves made, oldest first (JSON);
# rollback walks it back like an undo stack. Bounded so the tag stays small.
HISTORY_TAG = "fs.production_history"
HISTORY_MAX = 50


@dataclass
class MoveResult:
    model_name: str
    action: str
    from_version: str | None
    to_version: str
    decision: PolicyDecision | None = None


def describe(ref: VersionRef) -> dict:
    """A version as the API and CLI show it."""
    record = json.loads(ref.tags["fs.record"]) if "fs.record" in ref.tags else {}
    metrics = record.get("metrics") or {
        k.removeprefix("metric."): float(v) for k, v in ref.tags.items() if k.startswith("metric.")
    }
    created = (datetime.fromtimestamp(ref.created_at_ms / 1000, UTC).isoformat()
               if ref.created_at_ms else None)
    return {
        "version": ref.version, "semver": ref.semver, "change_type": ref.tags.get("change_type"),
        "aliases": list(ref.aliases), "stage": ref.stage, "run_id": ref.run_id,
        "created_at": created, "metrics": metrics, "parent_version": record.get("parent_version"),
        "archived": ref.tags.get("archived") == "true",
    }


class LifecycleService:
    def __init__(
        self,
        registry: ModelRegistry,
        audit: PromotionAudit,
        model: ModelSettings,
        settings: LifecycleSettings,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.registry = registry
        self.audit = audit
        self.model = model
        self.settings = settings
        self.policy = PromotionPolicy(registry, settings)

    # -- reads ---------------------------------------------------------------------------------
    async def production(self, name: str) -> VersionRef | None:
        try:
            return await asyncio.to_thread(self.registry.resolve, name, self.model.alias,
                                           self.model.stage_fallback)
        except ModelNotFound:
            return None

    async def versions(self, name: str) -> list[dict]:
        await asyncio.to_thread(self.registry.model_tags, name)  # 404 for an unknown model
        refs = await asyncio.to_thread(self.registry.list_versions, name)
        return [describe(ref) for ref in reversed(refs)]

    async def summary(self, name: str) -> dict:
        tags = await asyncio.to_thread(self.registry.model_tags, name)
        prod = await self.production(name)
        refs = await asyncio.to_thread(self.registry.list_versions, name)
        return {
            "name": name, "alias": self.model.alias,
            "production": describe(prod) if prod else None,
            "previous_production": rollback_target(history_of(tags), prod.version if prod else None),
            "latest_version": refs[-1].version if refs else None, "version_count": len(refs),
        }

    # -- moves -----------------------------------------------------------------------------------
    async def evaluate(self, name: str, version: str) -> PolicyDecision:
        """The policy's verdict on ``version`` against the current Production (no change made)."""
        candidate = await asyncio.to_thread(self.registry.get_version, name, version)
        prod = await self.production(name)
        return await asyncio.to_thread(self.policy.evaluate, candidate, prod)

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
        if not force:
            decision = await asyncio.to_thread(self.policy.evaluate, candidate, prod)
            if not decision.promote:
                await self._audit(name, actor, action, from_version, version, reason, "refused",
                                  decision.reason)
                raise PromotionRefused(f"promotion refused: {decision.reason}")
        await self._move(name, version, from_version, actor, action, reason,
                         "forced: policy skipped" if force else decision.reason)
        return MoveResult(name, action, from_version, version, decision)

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
        await asyncio.to_thread(self.registry.get_version, name, target)  # still exists?
        await self._move(name, target, current, actor, "rollback", reason, "rolled back")
        return MoveResult(name, "rollback", current, target)

    async def _move(self, name, to_version, from_version, actor, action, reason, detail) -> None:
        """Move the alias inside the transaction that writes its audit row: no unaudited move.

        The database is asked first, so an audit outage refuses the move (503) with nothing
        changed; a registry failure puts back what moved, rolls the row back and audits the
        failure instead. Moves of one model are serialized by that transaction, and each checks
        that Production is still the version its decision was made against (else 409).
        """
        def move(to: str, history: list[str]) -> None:
            self.registry.set_alias(name, self.model.alias, to)
            self.registry.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
            if self.settings.set_legacy_stage:
                self.registry.set_legacy_stage(name, to)

        entry = AuditEntry(name, actor, action, from_version, to_version, reason, "success", detail)
        before: list[str] = []
        moving = False
        try:
            async with self.audit.recording(entry):
                # Serialized with other moves of this model: re-check what the decision assumed.
                now = await self.production(name)
                current = now.version if now else None
                if current != from_version:
                    raise ProductionChanged(
                        f"Production moved to version {current} while this change was decided; retry")
                before = history_of(await asyncio.to_thread(self.registry.model_tags, name))
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

    async def _undo(self, name, from_version, history, move) -> None:
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

    async def _audit(self, name, actor, action, from_version, to_version, reason, outcome, detail):
        self._count(action, outcome)
        await self.audit.record(AuditEntry(name, actor, action, from_version, to_version, reason,
                                           outcome, detail))

    def _count(self, action: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.promotions.labels(action, outcome).inc()


# -- the Production history (pure, so the undo rules are tested without a registry) -----------

def history_of(tags: dict[str, str]) -> list[str]:
    try:
        history = json.loads(tags.get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        log.warning("ignoring an unreadable %s tag", HISTORY_TAG)
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def after_promotion(history: list[str], from_version: str | None, to_version: str) -> list[str]:
    """Push the new Production version; first the replaced one if a move outside our API
    (the plain MLflow client) put it there."""
    history = list(history)
    if from_version is not None and (not history or history[-1] != from_version):
        history.append(from_version)
    history.append(to_version)
    return history[-HISTORY_MAX:]


def rollback_target(history: list[str], current: str | None) -> str | None:
    """The version before ``current``: the top of the history, or the one under it when
    ``current`` is the top."""
    trail = history[:-1] if history and history[-1] == current else history
    return next((v for v in reversed(trail) if v != current), None)


def after_rollback(history: list[str], current: str | None) -> list[str]:
    """Pop ``current`` (and any copies of it underneath) so the next rollback goes further back."""
    history = list(history)
    while history and history[-1] == current:
        history.pop()
    return history
