"""Holds the model version being served and loads versions off the event loop.

The serving model is one reference, replaced in a single assignment: a request takes the
reference once and finishes on that model even if another version is swapped in meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.config import ModelSettings
from app.errors import DomainError, ModelNotReady, ModelSuspended
from app.metrics import ServiceMetrics
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import LoadedModel, PredictorOptions, load_from_path
from app.serving.siblings import SiblingWorkers

log = logging.getLogger(__name__)

WARMUP_ROWS = 200


class ModelCheckFailed(Exception):
    """A loaded version could not predict its own reference sample."""


@dataclass(frozen=True)
class Suspension:
    """The stop switch as this worker applies it (kept current by ``app.lifecycle.suspension``).

    ``confirmed`` is False only while the state could not be read from the database yet: the
    worker then refuses predictions as not ready (it cannot know it may serve).
    """

    reason: str
    since: datetime
    by: str
    confirmed: bool = True

    def error(self, model_name: str) -> DomainError:
        if not self.confirmed:
            return ModelNotReady(self.reason)
        return ModelSuspended(
            f"model {model_name!r} is suspended (since {self.since.isoformat(timespec='seconds')}): "
            f"{self.reason}",
            [{"field": "model", "type": "suspended", "message": self.reason}],
        )


def warm_up(model: LoadedModel) -> None:
    """Predict the reference sample (or nothing, if the version has none) before serving."""
    if model.reference is None:
        return
    rows = model.reference.head(WARMUP_ROWS).to_dict("records")
    proba = model.predict_rows(rows)  # the path requests take, lean or not
    if proba.shape != (len(rows), 3) or not ((proba >= 0) & (proba <= 1)).all():
        raise ModelCheckFailed(f"version {model.version} returned malformed probabilities")


class ModelSlot:
    """The one serving model of this worker; ``install`` is the only way a version gets in."""

    def __init__(
        self, *, registry: ModelRegistry, settings: ModelSettings, metrics: ServiceMetrics,
        siblings: SiblingWorkers | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        # The other workers of this server: readiness waits until each serves a model too.
        self.siblings = siblings or SiblingWorkers(Path("."), expected=1)
        self._marked: asyncio.Task[None] | None = None
        self._current: LoadedModel | None = None
        self._lock = asyncio.Lock()
        self._compiling: asyncio.Task[None] | None = None
        # The stop switch: not None refuses every prediction (one attribute read per request).
        self.suspension: Suspension | None = None
        # The version the registry's challenger alias names, loaded and checked beside Production
        # (``app.serving.challenger``); shadow scoring and canary traffic read it.
        self.challenger: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    async def serving_everywhere(self) -> bool:
        """This worker serves a model, and so does every other worker of this server."""
        if self._current is None:
            return False
        return self.siblings.expected <= 1 or await asyncio.to_thread(self.siblings.all_ready)

    def require(self) -> LoadedModel:
        model = self._current
        if model is None:
            raise ModelNotReady("no model is loaded yet")
        return model

    async def resolve(self) -> VersionRef:
        s = self.settings
        return await asyncio.to_thread(self.registry.resolve, s.name, s.alias, s.stage_fallback)

    async def load(self, ref: VersionRef) -> LoadedModel:
        """Download, load and warm up a version, all in a worker thread."""

        def _load() -> LoadedModel:
            path = self.registry.download(ref)
            model = load_from_path(ref, path, PredictorOptions.of(self.settings))
            warm_up(model)
            return model

        return await asyncio.to_thread(_load)

    def install(self, model: LoadedModel) -> None:
        """Serve ``model`` from now on: one assignment, so requests in flight keep their model.

        The caller hands over a version already loaded and checked (``load`` did both)."""
        previous, self._current = self._current, model
        self.metrics.set_serving(model.name, model.version, model.semver, model.predictor)
        if previous is None and self.siblings.expected > 1:
            self._marked = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.siblings.mark_ready), name="mark-worker-ready")
        log.info(
            "serving %s version %s%s, predictor %s",
            model.name, model.version, f" (was {previous.version})" if previous else "", model.predictor,
        )
        if model.pending_compile is not None:
            # Bounded by FS_MODEL_COMPILE_TIMEOUT_S; a worker stopping meanwhile exits once the
            # conversion's child process is done (the default executor is waited for).
            self._compiling = asyncio.get_running_loop().create_task(
                self._compile(model), name=f"compile-{model.version}")

    async def _compile(self, model: LoadedModel) -> None:
        """Build the compiled forest of the version being served, then say it is in use."""
        try:
            switched = await asyncio.to_thread(model.compile_pending)
        except Exception:  # the lean path keeps serving; the error is the operator's to see
            log.exception("version %s: building the compiled forest failed", model.version)
            return
        if switched and self._current is model:
            self.metrics.set_serving(model.name, model.version, model.semver, model.predictor)

    async def prepare_cache(self) -> LoadedModel:
        """Download the Production version into the model cache and build its compiled forest
        and serving bundle now, as a serving worker would in the background on its first start,
        so that the workers of this host start from the bundle (app.serving.bundle). Nothing is
        installed."""
        model = await self.load(await self.resolve())
        if model.pending_compile is not None:
            await asyncio.to_thread(model.compile_pending)
        return model

    async def load_production(self) -> LoadedModel:
        """Resolve the Production version and serve it (no-op when it is already served)."""
        async with self._lock:
            ref = await self.resolve()
            current = self._current
            if current is not None and current.version == ref.version:
                return current
            model = await self.load(ref)
            self.install(model)
            return model
