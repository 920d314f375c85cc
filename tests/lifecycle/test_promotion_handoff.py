"""A promotion loads the candidate once: the model the policy checked is the one the slot serves."""

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
        lifecycle = LifecycleService(
            registry=container.registry, audit=PromotionAudit(engine=container.engine),
            model=settings.model, settings=settings.lifecycle, metrics=container.metrics, slot=slot)

        result = await lifecycle.promote(MODEL, "2", actor="test", reason="handoff")
        assert result.installed and result.decision is not None and result.decision.promote
        assert slot.loads == ["1", "2"]  # Production at start, then the candidate once
        assert slot.require().version == "2"
        cached = container.registry.last_cached(MODEL, settings.model.alias)
        assert cached is not None and cached.version == "2"  # the fallback serves it too

        # A refused promotion installs nothing; a rollback is left to the reloader.
        with pytest.raises(PromotionRefused):
            await lifecycle.promote(MODEL, "2", actor="test", reason=None)
        back = await lifecycle.rollback(MODEL, actor="test", reason=None)
        assert (back.to_version, back.installed) == ("1", False)
        assert slot.loads == ["1", "2"] and slot.require().version == "2"


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
