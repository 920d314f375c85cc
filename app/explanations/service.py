"""Explanations of logged predictions by the version that made them (docs/explanations.md).

A prediction's document is computed once, stored, and from then on read back: a later read
returns the same document even after its version is archived or deleted from the registry. The
version comes from the serving slot when it is the one serving, else from the registry (loaded
on demand); each version's TreeSHAP engine is kept for the next prediction it made (LRU, at most
``cached_versions``). The CPU-bound work runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config.explanations import ExplanationSettings
from app.errors import DatabaseUnavailable, ExplanationUnavailable, ModelNotFound, PredictionNotFound
from app.explanations import document as documents
from app.explanations.store import ExplanationStore
from app.memory import return_freed_memory
from app.ml.features import FEATURE_NAMES
from app.prediction_log.log import PredictionLog
from app.registry.client import ModelRegistry
from app.serving.loaded_model import LoadedModel, load_from_path
from app.serving.model_slot import ModelSlot

if TYPE_CHECKING:  # numba is imported with the engine, on first use (see _engine_module)
    from app.explanations.engine import ExplanationEngine

log = logging.getLogger(__name__)

Key = tuple[str, str]


def _build(module: Any, model: LoadedModel) -> ExplanationEngine:
    """A version's engine (blocking); loading numba and the kernel frees much of what it took."""
    engine: ExplanationEngine = module.ExplanationEngine(model)
    return_freed_memory()
    return engine


class ExplanationService:
    def __init__(
        self, *, engine: AsyncEngine, prediction_log: PredictionLog, slot: ModelSlot,
        registry: ModelRegistry, settings: ExplanationSettings, jit_cache_dir: Path,
    ) -> None:
        self._store = ExplanationStore(engine)
        self._log = prediction_log
        self._slot = slot
        self._registry = registry
        self.settings = settings
        self._jit_cache_dir = jit_cache_dir
        self._engines: OrderedDict[Key, ExplanationEngine] = OrderedDict()
        self._building: dict[Key, asyncio.Lock] = {}
        self._warming: asyncio.Task[None] | None = None

    @property
    def max_items(self) -> int:
        return self.settings.max_items

    @property
    def engines(self) -> list[Key]:
        """The versions whose engine is in memory, least recently used first."""
        return list(self._engines)

    async def explain_prediction(self, prediction_id: uuid.UUID) -> dict[str, Any]:
        """The stored document of a logged prediction, computed and stored on first request."""
        try:
            stored = await self._store.get(prediction_id)
        except DatabaseUnavailable:
            stored = None  # a prediction still in a spool can be explained all the same
        if stored is not None:
            return stored
        record = await self._log.get(prediction_id)
        if record is None:
            raise PredictionNotFound("no prediction with this id")
        model = await self._model(record["model_name"], record["model_version"])
        engine = await self.engine_for(model)
        rows = [{name: record["features"][name] for name in FEATURE_NAMES}]
        [document] = await asyncio.to_thread(
            self._documents, engine, [prediction_id], rows, [record["level"]], [record["probabilities"]]
        )
        return (await self._keep([document]))[0]

    async def explain_rows(self, model: LoadedModel, rows: list[dict[str, Any]],
                           results: list[Any]) -> list[dict[str, Any]]:
        """Documents of predictions just made by ``model`` (``results``: the core's
        ``PredictionResult``s), stored like any other so a later read returns the same ones."""
        engine = await self.engine_for(model)
        documents_ = await asyncio.to_thread(
            self._documents, engine, [r.prediction_id for r in results], rows,
            [r.level for r in results], [r.probabilities for r in results],
        )
        return await self._keep(documents_)

    async def waterfall(self, prediction_id: uuid.UUID) -> str:
        """The SVG waterfall chart of a prediction's explanation."""
        from app.explanations.waterfall import render

        document = await self.explain_prediction(prediction_id)
        return await asyncio.to_thread(render, document)

    async def engine_for(self, model: LoadedModel) -> ExplanationEngine:
        """The TreeSHAP engine of ``model``'s version (built in a thread the first time).

        Raises ``ExplanationUnavailable`` for a version that is not a random forest pipeline."""
        key = (model.name, model.version)
        if (engine := self._engines.get(key)) is not None:
            self._engines.move_to_end(key)
            return engine
        async with self._building.setdefault(key, asyncio.Lock()):
            cached = self._engines.get(key)
            if cached is not None:  # built by the request this one waited for
                return cached
            module = self._engine_module()
            try:
                built: ExplanationEngine = await asyncio.to_thread(_build, module, model)
            finally:
                self._building.pop(key, None)
            log.info("explanations: engine of %s version %s built (%.1f MB)",
                     model.name, model.version, built.nbytes / 1e6)
            self._engines[key] = built
            while len(self._engines) > self.settings.cached_versions:
                self._engines.popitem(last=False)
        return built

    def _engine_module(self) -> Any:
        # numba caches the compiled kernel beside its source (app/explanations/__pycache__); where
        # that is not writable (an installed image) under the data dir, unless NUMBA_CACHE_DIR
        # says otherwise. Read when numba is first imported, which is here.
        if not os.access(Path(__file__).parent, os.W_OK):
            os.environ.setdefault("NUMBA_CACHE_DIR", str(self._jit_cache_dir))
        from app.explanations import engine

        return engine

    async def start(self) -> None:
        """Serving: build the serving version's engine in the background once it is loaded, so
        the first explanation does not wait for the kernel's compilation (seconds, cold)."""
        if self.settings.warm_up:
            self._warming = asyncio.get_running_loop().create_task(self._warm_up(), name="explain-warm-up")

    async def stop(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming

    async def _warm_up(self) -> None:
        while (model := self._slot.current) is None:  # noqa: ASYNC110  # the slot has no event to wait on
            await asyncio.sleep(0.2)
        try:
            await self.engine_for(model)
        except ExplanationUnavailable as exc:
            log.info("explanations: version %s cannot be explained (%s)", model.version, exc.message)
        except Exception:  # the engine is built again on the first request; this was an optimisation
            log.exception("explanations: warming up the engine of version %s failed", model.version)

    async def _model(self, name: str, version: str) -> LoadedModel:
        """The version that made a prediction: the serving one, a cached engine's, or loaded."""
        current = self._slot.current
        if current is not None and (current.name, current.version) == (name, version):
            return current
        if (engine := self._engines.get((name, version))) is not None:
            return engine.model

        def load() -> LoadedModel:
            ref = self._registry.get_version(name, version)
            return load_from_path(ref, self._registry.download(ref))

        try:
            return await asyncio.to_thread(load)
        except ModelNotFound:
            raise ExplanationUnavailable(
                f"version {version} of {name} is no longer in the registry and was never explained"
            ) from None

    @staticmethod
    def _documents(engine: ExplanationEngine, ids: list[uuid.UUID], rows: list[dict[str, Any]],
                   levels: list[str], logged: list[dict[str, float]]) -> list[dict[str, Any]]:
        _, explained = engine.explain_rows(rows)
        ref = engine.model.ref
        of = documents.ModelOf(ref.name, ref.version, ref.semver, ref.run_id)
        return [
            documents.build(
                prediction_id=ids[i], model=of, features=engine.feature_names, row=rows[i],
                level=levels[i], base=explained.base, contributions=explained.features[i],
                model_proba=explained.proba[i], logged=logged[i],
            )
            for i in range(len(rows))
        ]

    async def _keep(self, computed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store new documents and return the stored ones (another worker's, if it won a race)."""
        try:
            await self._store.add(computed)
            stored = [await self._store.get(uuid.UUID(d["prediction_id"])) for d in computed]
        except DatabaseUnavailable:
            log.warning("explanations: database unavailable; %d documents returned unstored",
                        len(computed))
            return computed
        return [s if s is not None else d for s, d in zip(stored, computed, strict=True)]
