"""The model cache is shared by the workers of a host: concurrent downloads of one version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.models import Model

from app.config import Settings
from app.registry.client import ModelRegistry


def test_concurrent_downloads_of_one_version_all_get_a_complete_copy(
    settings: Settings, tmp_path: Path
) -> None:
    # One registry object per "worker", as separate processes would have; one cache directory.
    cache = tmp_path / "model-cache"
    workers = [
        ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                      artifact_root=None, cache_dir=cache)
        for _ in range(4)
    ]
    ref = workers[0].resolve(settings.model.name, settings.model.alias, True)

    def download_and_read(registry: ModelRegistry) -> str:
        path = registry.download(ref)
        return str(Model.load(str(path)).signature)  # the copy is whole while others install

    with ThreadPoolExecutor(len(workers)) as pool:
        signatures = list(pool.map(download_and_read, workers))
    assert len(set(signatures)) == 1 and signatures[0] != "None"
    # One copy was installed; the others read it instead of replacing it.
    assert [p.name for p in (cache / settings.model.name).iterdir() if not p.name.startswith(".")] == [
        ref.version
    ]
