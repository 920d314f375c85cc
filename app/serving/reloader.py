"""Follows the registry: when Production points at another version, load it, check it, swap it in.

Loading and the warm-up prediction run in a worker thread; the swap is one assignment, so requests
in flight finish on the model they started with. A version that fails to load or to pass the check
is never served: the failure is counted (``fs_model_reloads_total{outcome="failed"}``), logged and
audited (``reload-failed``), the old version keeps serving, and the version is retried only after
``retry_failed_s``. If the registry is unreachable while nothing is loaded, the version last served
(cached on local disk) is served and readiness says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from typing import Protocol

from app.config import LifecycleSettings
from app.errors import DomainError, ModelNotFound, RegistryUnavailable
from app.metrics import ServiceMetrics
from app.registry.client import VersionRef
from app.serving.loaded_model import LoadedModel
from app.serving.model_slot import ModelSlot

log = logging.getLogger(__name__)

ACTOR = "reloader"
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")


class FailedReloadAudit(Protocol):
    """Where a failed reload is recorded (the lifecycle's promotion audit, wired by the container;
    serving sits below lifecycle and knows only this)."""

    async def reload_failed(self, *, model_name: str, actor: str, serving: str | None,
                            target: str, detail: str) -> None: ...


@dataclass
class RegistryStatus:
    reachable: bool | None = None  # None: not polled yet
    last_error: str | None = None
    last_success_at: float | None = None


@dataclass
class ReloadOutcome:
    outcome: str  # "unchanged", "reloaded", "failed", "skipped", "unavailable", "no-production"
    serving: str | None
    target: str | None = None
    detail: str | None = None


class Reloader:
    def __init__(
        self,
        *,
        slot: ModelSlot,
        audit: FailedReloadAudit,
        metrics: ServiceMetrics,
        settings: LifecycleSettings,
        interval_s: float,
    ) -> None:
        self.slot = slot
        self.audit = audit
        self.metrics = metrics
        self.settings = settings
        self.interval_s = interval_s
        self.status = RegistryStatus()
        self._failed: dict[str, float] = {}  # version -> monotonic time of its last failure
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # completed polls, so callers can wait for "the next full poll"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-reloader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # keep following: one bad poll must not end hot reload for good
                log.exception("registry poll failed; still serving the previous version")
            await asyncio.sleep(self.interval_s)

    async def poll_once(self, retry_failed: bool = False) -> ReloadOutcome:
        """One look at the registry; serializes with other polls (e.g. an admin's reload)."""
        async with self._lock:
            try:
                return await self._poll(retry_failed)
            finally:
                self.polls += 1

    async def _poll(self, retry_failed: bool) -> ReloadOutcome:
        current = self.slot.current
        serving = current.version if current else None
        try:
            ref = await self.slot.resolve()
        except RegistryUnavailable as exc:
            self.status = dataclasses.replace(self.status, reachable=False, last_error=exc.message)
            log.warning("model registry unreachable: %s", exc.message)
            if current is None:
                return await self._serve_cached()
            return ReloadOutcome("unavailable", serving, detail=exc.message)
        except ModelNotFound as exc:
            self._reachable()
            log.warning("no Production model: %s", exc.message)
            return ReloadOutcome("no-production", serving, detail=exc.message)
        self._reachable()
        return await self._serve(ref, retry_failed)

    # -- the lifecycle's hand-off (``app.lifecycle.service.ServingSlot``) ----------------------------
    async def load(self, ref: VersionRef) -> LoadedModel:
        """Download, load and check a version off the event loop (a promotion's candidate)."""
        return await self.slot.load(ref)

    async def install(self, model: LoadedModel) -> None:
        """Serve a model a promotion already loaded and checked, as a reload would have."""
        self._failed.pop(model.version, None)
        self.slot.install(model)
        self.metrics.model_reloads.labels("success").inc()
        await self._remember(model)

    async def serve(self, ref: VersionRef) -> ReloadOutcome:
        """Load and serve ``ref``, the version a forced move or a rollback just made Production
        (serialized with polls; a failure is counted, audited and remembered like a poll's)."""
        async with self._lock:
            return await self._serve(ref, retry_failed=True)

    async def _serve(self, ref: VersionRef, retry_failed: bool) -> ReloadOutcome:
        current = self.slot.current
        serving = current.version if current else None
        if current is not None and current.version == ref.version:
            if current.ref.via == "cache":  # the registry is back: same version, fresh metadata
                self.slot.install(dataclasses.replace(current, ref=ref))
            return ReloadOutcome("unchanged", serving, ref.version)
        failed_at = self._failed.get(ref.version)
        if (failed_at is not None and not retry_failed
                and time.monotonic() - failed_at < self.settings.retry_failed_s):
            return ReloadOutcome("skipped", serving, ref.version, "failed recently; not retried yet")

        try:
            model = await self.slot.load(ref)
        except Exception as exc:
            return await self._failed_load(ref.name, serving, ref.version, exc)
        now = self.slot.current
        if now is not None and now.version == model.version:
            # A promotion installed the same version while this poll was loading it (install
            # does not wait for a poll): serving it twice would count a reload that never was.
            return ReloadOutcome("unchanged", now.version, ref.version)
        await self.install(model)
        return ReloadOutcome("reloaded", model.version, ref.version)

    def _reachable(self) -> None:
        self.status = RegistryStatus(reachable=True, last_error=None, last_success_at=time.time())

    async def _failed_load(
        self, name: str, serving: str | None, version: str, exc: Exception
    ) -> ReloadOutcome:
        self._failed[version] = time.monotonic()
        self.metrics.model_reloads.labels("failed").inc()
        message = exc.message if isinstance(exc, DomainError) else str(exc)
        # The audit is readable by anyone: never let URL credentials into it.
        detail = f"{type(exc).__name__}: {_URL_CREDENTIALS.sub('://***@', message)[:300]}"
        log.error("version %s of %s failed to load or to pass its check; still serving %s",
                  version, name, serving, exc_info=exc)
        try:
            await self.audit.reload_failed(model_name=name, actor=ACTOR, serving=serving,
                                           target=version, detail=detail)
        except Exception:
            log.exception("could not audit the failed reload of version %s", version)
        return ReloadOutcome("failed", serving, version, detail)

    async def _serve_cached(self) -> ReloadOutcome:
        s = self.slot.settings
        ref = await asyncio.to_thread(self.slot.registry.last_cached, s.name, s.alias)
        if ref is None:
            return ReloadOutcome("unavailable", None, detail="registry unreachable and nothing cached")
        try:
            model = await self.slot.load(ref)
        except Exception as exc:
            return await self._failed_load(ref.name, None, ref.version, exc)
        self.slot.install(model)
        log.warning("registry unreachable: serving version %s from the local cache", model.version)
        return ReloadOutcome("reloaded", model.version, ref.version, "from the local cache")

    async def _remember(self, model: LoadedModel) -> None:
        try:
            await asyncio.to_thread(self.slot.registry.mark_serving, model.ref, self.slot.settings.alias)
        except OSError:
            log.exception("could not record version %s as the cached serving version", model.version)
