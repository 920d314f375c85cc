"""The trained model of the shared test registry, as the service loads it."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.registry.client import ModelRegistry
from app.serving.loaded_model import LoadedModel, load_from_path
from tests.support.settings import make_settings


def registry_for(settings: Settings) -> ModelRegistry:
    return ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                         artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)


def load_production(data_dir: Path) -> LoadedModel:
    """The Production version of ``data_dir``'s registry, loaded on the lean path."""
    settings = make_settings(data_dir)
    registry = registry_for(settings)
    ref = registry.resolve(settings.model.name, settings.model.alias)
    return load_from_path(ref, registry.download(ref))
