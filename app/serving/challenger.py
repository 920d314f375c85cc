"""Follows the registry's challenger alias: the version it names is loaded beside Production.

The challenger is loaded and checked exactly as a Production version is (``ModelSlot.load``:
download, load, warm-up on its reference sample), then kept in ``slot.challenger`` where the
shadow scorer and the canary read it. Removing the alias, or pointing it at the version that is
Production (a promoted challenger), unloads it. A version that fails to load is never used; it is
counted (``fs_challenger_loads_total{outcome="failed"}``), logged and retried after
``retry_failed_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.errors import ModelNotFound, RegistryUnavailable
from app.metrics import ServiceMetrics
from app.serving.model_slot import ModelSlot

log = logging.getLogger(__name__)


class ChallengerFollower:
    def __init__(self, *, slot: ModelSlot, alias: str, metrics: ServiceMetrics, interval_s: float,
                 retry_failed_s: float) -> None:
        self.slot = slot
        self.alias = alias
        self.metrics = metrics
        self.interval_s = interval_s
        self.retry_failed_s = retry_failed_s
        self._failed: dict[str, float] = {}  # version -> monotonic time of its last failure
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="challenger-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # keep following; the next poll tries again
                log.exception("challenger poll failed")
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> str:
        """One look at the alias: "loaded", "unchanged", "none", "failed", "skipped", "unavailable"."""
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> str:
        name = self.slot.settings.name
        try:
            ref = await asyncio.to_thread(self.slot.registry.resolve, name, self.alias, False)
        except ModelNotFound:
            self._unload("the alias is not set")
            return "none"
        except RegistryUnavailable:  # keep what we have until the registry answers again
            return "unavailable"
        production = self.slot.current
        if production is not None and production.version == ref.version:
            self._unload("it is the Production version now")
            return "none"
        current = self.slot.challenger
        if current is not None and current.version == ref.version:
            return "unchanged"
        failed_at = self._failed.get(ref.version)
        if failed_at is not None and time.monotonic() - failed_at < self.retry_failed_s:
            return "skipped"
        try:
            model = await self.slot.load(ref)
        except Exception:
            self._failed[ref.version] = time.monotonic()
            self.metrics.challenger_loads.labels("failed").inc()
            log.exception("challenger version %s of %s failed to load or to pass its check; "
                          "not shadow-scoring with it", ref.version, name)
            return "failed"
        self._failed.pop(ref.version, None)
        self.slot.challenger = model
        self.metrics.challenger_loads.labels("success").inc()
        self.metrics.set_challenger(name, model.version)
        log.info("challenger: version %s of %s loaded beside Production %s", model.version, name,
                 production.version if production else None)
        if model.pending_compile is not None:  # the compiled forest, as Production gets it
            try:
                await asyncio.to_thread(model.compile_pending)
            except Exception:
                log.exception("challenger version %s: building the compiled forest failed; "
                              "it scores on the lean path", model.version)
        return "loaded"

    def _unload(self, why: str) -> None:
        if self.slot.challenger is None:
            return
        log.info("challenger: version %s unloaded (%s)", self.slot.challenger.version, why)
        self.slot.challenger = None
        self.metrics.set_challenger(self.slot.settings.name, None)
