"""A promotion loads the candidate once: the model the policy checked is the one the slot serves;
a forced promotion and a rollback are served by the lifecycle service too (no reload by a caller)."""

from __future__ import annotations

import pytest

from app.container import build
from app.db.migrate import upgrade
from app.errors import PromotionRefused
from app.lifecycle.audit import PromotionAudit
from app.lifecycle.service import LifecycleService
from app.registry.client import VersionRef
from app.serving.loaded_model import LoadedModel
from app.serving.model_slot import ModelSlot
from app.serving.reloader import Reloader
from tests.support.lifecycle import MODEL, lifecycle_settings


class CountingSlot(ModelSlot):
    """The real slot, noting each version it loads."""

    loads: list[str]

    async def load(self, ref: VersionRef) -> LoadedModel:
        self.loads.append(ref.version)
        return await super().load(ref)


async def test_promotion_installs_the_checked_model_without_loading_it_again(lifecycle_dir):
    settings = lifecycle_settings(lifecycle_dir)
    await upgrade(settings.db_url)
    async with build(settings) as container:
        slot = CountingSlot(registry=container.registry, settings=settings.model,
                            metrics=container.metrics)
        slot.loads = []
        await slot.load_production()
        reloader = Reloader(slot=slot, audit=container.reloader.audit, metrics=container.metrics,
                            settings=settings.lifecycle, interval_s=60)
        lifecycle = LifecycleService(
            registry=container.registry, audit=PromotionAudit(engine=container.engine),
            model=settings.model, settings=settings.lifecycle, metrics=container.metrics,
            slot=reloader)

        result = await lifecycle.promote(MODEL, "2", actor="test", reason="handoff")
        assert result.installed and result.decision is not None and result.decision.promote
        assert slot.loads == ["1", "2"]  # Production at start, then the candidate once
        assert slot.require().version == "2"
        cached = container.registry.last_cached(MODEL, settings.model.alias)
        assert cached is not None and cached.version == "2"  # the fallback serves it too

        # A refused promotion installs nothing.
        with pytest.raises(PromotionRefused):
            await lifecycle.promote(MODEL, "2", actor="test", reason=None)
        assert slot.loads == ["1", "2"] and slot.require().version == "2"

        # A rollback is loaded and served by the lifecycle service itself, no poll involved.
        back = await lifecycle.rollback(MODEL, actor="test", reason=None)
        assert (back.to_version, back.installed) == ("1", True)
        assert back.reload is not None and back.reload.outcome == "reloaded"
        assert slot.loads == ["1", "2", "1"] and slot.require().version == "1"

        # So is a forced promotion (the policy skipped, so nothing was loaded for it before).
        forced = await lifecycle.promote(MODEL, "2", actor="test", reason=None, force=True)
        assert forced.decision is None and forced.installed
        assert slot.loads == ["1", "2", "1", "2"] and slot.require().version == "2"
        assert reloader.polls == 0


async def test_without_a_slot_nothing_is_installed(lifecycle_dir):
    """The CLI's lifecycle service (no slot): the policy loads the candidate itself."""
    settings = lifecycle_settings(lifecycle_dir)
    await upgrade(settings.db_url)
    async with build(settings) as container:
        lifecycle = LifecycleService(
            registry=container.registry, audit=PromotionAudit(engine=container.engine),
            model=settings.model, settings=settings.lifecycle)
        result = await lifecycle.promote(MODEL, "2", actor="test", reason=None)
        assert result.decision is not None and result.decision.promote
        assert not result.installed
