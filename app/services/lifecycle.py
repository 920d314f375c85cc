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
from app.errors import ModelNotFound, PromotionRefused
from app.metrics import ServiceMetrics
from app.services.audit import AuditEntry, PromotionAudit
from app.services.policy import PolicyDecision, PromotionPolicy
from app.services.registry import ModelRegistry, VersionRef

log = logging.getLogger(__name__)

PREVIOUS_TAG = "fs.previous_production"


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
            "previous_production": tags.get(PREVIOUS_TAG),
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
        """Point Production back at the version it had before the last move."""
        prod = await self.production(name)
        tags = await asyncio.to_thread(self.registry.model_tags, name)
        previous = tags.get(PREVIOUS_TAG)
        current = prod.version if prod else None
        if not previous or previous == current:
            await self._audit(name, actor, "rollback", current, previous, reason, "refused",
                              "no previous Production version is recorded")
            raise PromotionRefused("no previous Production version to roll back to")
        await asyncio.to_thread(self.registry.get_version, name, previous)  # still exists?
        await self._move(name, previous, current, actor, "rollback", reason, "rolled back")
        return MoveResult(name, "rollback", current, previous)

    async def _move(self, name, to_version, from_version, actor, action, reason, detail) -> None:
        def move() -> None:
            self.registry.set_alias(name, self.model.alias, to_version)
            if from_version:
                self.registry.client.set_registered_model_tag(name, PREVIOUS_TAG, from_version)
            if self.settings.set_legacy_stage:
                self.registry.set_legacy_stage(name, to_version)

        try:
            await asyncio.to_thread(move)
        except Exception as exc:
            await self._audit(name, actor, action, from_version, to_version, reason, "failed",
                              f"the registry refused the change ({type(exc).__name__})")
            raise
        await self._audit(name, actor, action, from_version, to_version, reason, "success", detail)

    async def _audit(self, name, actor, action, from_version, to_version, reason, outcome, detail):
        if self.metrics is not None:
            self.metrics.promotions.labels(action, outcome).inc()
        await self.audit.record(AuditEntry(name, actor, action, from_version, to_version, reason,
                                           outcome, detail))
