"""The MLflow registry seen by the service: experiments, resolving Production, downloading versions.

Every method is synchronous (the MLflow client is); async callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException, RestException

from app.errors import ModelNotFound, RegistryUnavailable

log = logging.getLogger(__name__)

# The four experiments the platform expects to exist.
DEFAULT_EXPERIMENTS = (
    "future-skills-prediction",
    "model-training",
    "model-evaluation",
    "production-monitoring",
)
LEGACY_STAGE = "Production"
_CACHE_MARKER = "fs-cache.json"

# MLflow reads these from the environment only; the caller's own values win.
_QUIET_MLFLOW = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage telemetry from the service or the CLI
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # downloads would draw bars on stderr
}


def quiet_mlflow() -> None:
    """Turn MLflow's telemetry and progress bars off for this process, unless set already.

    Called by the entry points (the CLI's ``main``) and by ``ModelRegistry`` when it is built,
    never at import: MLflow has no other switch than its environment variables, and it checks
    them on every event, so setting them before the first registry call is early enough.
    """
    for key, value in _QUIET_MLFLOW.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class VersionRef:
    """One registered model version as the service needs it."""

    name: str
    version: str
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    stage: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created_at_ms: int | None = None
    via: str = "alias"  # how it was resolved: "alias", "stage" or "cache"

    @property
    def semver(self) -> str | None:
        return self.tags.get("semver")

    @classmethod
    def from_mlflow(cls, mv: ModelVersion, via: str = "alias") -> VersionRef:
        return cls(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            source=mv.source or "",
            aliases=tuple(mv.aliases or ()),
            stage=mv.current_stage,
            tags=dict(mv.tags or {}),
            created_at_ms=mv.creation_timestamp,
            via=via,
        )


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")



@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block; blocking."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class ModelRegistry:
    def __init__(
        self,
        *,
        tracking_uri: str,
        registry_uri: str,
        artifact_root: str | None,
        cache_dir: Path,
    ) -> None:
        quiet_mlflow()
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.artifact_root = artifact_root
        self.cache_dir = cache_dir
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    # -- experiments -------------------------------------------------------------------------
    def ensure_experiments(self, names: Iterable[str] = DEFAULT_EXPERIMENTS) -> dict[str, str]:
        """Create missing experiments; return name -> experiment id."""
        ids: dict[str, str] = {}
        for name in names:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                location = f"{self.artifact_root}/{name}" if self.artifact_root else None
                ids[name] = self.client.create_experiment(name, artifact_location=location)
                log.info("created MLflow experiment %s", name)
            else:
                ids[name] = experiment.experiment_id
        return ids

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, name: str, alias: str, stage_fallback: bool = True) -> VersionRef:
        """The version the alias points at, else (with a warning) the legacy Production stage."""
        try:
            try:
                return VersionRef.from_mlflow(self.client.get_model_version_by_alias(name, alias))
            except MlflowException as exc:
                if not _is_not_found(exc):
                    raise
            if stage_fallback:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    versions = self.client.get_latest_versions(name, stages=[LEGACY_STAGE])
                if versions:
                    log.warning(
                        "model %s has no alias %r; serving the deprecated stage %r (version %s)",
                        name, alias, LEGACY_STAGE, versions[0].version,
                    )
                    return VersionRef.from_mlflow(versions[0], via="stage")
        except MlflowException as exc:
            # A tracking server says "no such model" as a RestException: that is not an outage.
            missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                not isinstance(exc, RestException) and _is_not_found(exc)
            )
            if not missing:
                raise RegistryUnavailable(f"the model registry could not be read: {exc.error_code}") from exc
        except Exception as exc:  # connection refused, DNS, database locked, ...
            raise RegistryUnavailable(f"the model registry could not be read: {type(exc).__name__}") from exc
        raise ModelNotFound(f"model {name!r} has no version with alias {alias!r}")

    def get_version(self, name: str, version: str) -> VersionRef:
        try:
            return VersionRef.from_mlflow(self.client.get_model_version(name, version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise ModelNotFound(f"model {name!r} has no version {version!r}") from exc
            raise RegistryUnavailable("the model registry could not be read") from exc

    def list_versions(self, name: str) -> list[VersionRef]:
        try:
            return self._list_versions(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                raise ModelNotFound(f"no registered model {name!r}") from exc
            raise RegistryUnavailable(f"the model registry could not be read: {exc.error_code}") from exc

    def _list_versions(self, name: str) -> list[VersionRef]:
        versions = self.client.search_model_versions(f"name = '{name}'")
        refs = sorted((VersionRef.from_mlflow(v) for v in versions), key=lambda v: int(v.version))
        if not refs:
            return refs
        # Version search leaves aliases empty; the registered model knows them.
        by_version: dict[str, list[str]] = {}
        for alias, version in (self.client.get_registered_model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        return [dataclasses.replace(r, aliases=tuple(sorted(by_version.get(r.version, ())))) for r in refs]

    def production_state(self, name: str, alias: str,
                         stage_fallback: bool = True) -> tuple[str | None, dict[str, str]]:
        """The version ``alias`` points at (None: no Production) and the registered model's tags,
        from one read of the registered model; the legacy stage is asked only when the alias
        is unset and ``stage_fallback`` allows it."""
        model = self._registered(name)
        tags = dict(model.tags or {})
        version = (model.aliases or {}).get(alias)
        if version is not None:
            return str(version), tags
        if not stage_fallback:
            return None, tags
        try:
            return self.resolve(name, alias, stage_fallback).version, tags
        except ModelNotFound:
            return None, tags

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (no error when it is not set)."""
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of the registered model, from one read."""
        aliases = self._registered(name).aliases or {}
        return {alias: str(version) for alias, version in aliases.items()}

    def set_legacy_stage(self, name: str, version: str, stage: str = LEGACY_STAGE) -> None:
        """Move the deprecated stage too (for consumers that still read stages)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.client.transition_model_version_stage(
                name, version, stage, archive_existing_versions=stage == LEGACY_STAGE
            )

    def model_tags(self, name: str) -> dict[str, str]:
        return dict(self._registered(name).tags or {})

    def _registered(self, name: str) -> RegisteredModel:
        """The registered model, or ModelNotFound / RegistryUnavailable."""
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                raise ModelNotFound(f"no registered model {name!r}") from exc
            raise RegistryUnavailable("the model registry could not be read") from exc

    # -- downloading -------------------------------------------------------------------------
    def cached_path(self, name: str, version: str) -> Path:
        return self.cache_dir / name / version

    def download(self, ref: VersionRef) -> Path:
        """Download a version into the local cache (complete or not at all) and return its path.

        Workers of one host share the cache: a per-version lock makes the first one download while
        the others wait and then read its copy; without it a second worker replaced the directory
        the first was loading from.
        """
        target = self.cached_path(ref.name, ref.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(target.parent / f".{ref.version}.lock"):
            if (target / _CACHE_MARKER).exists():
                return target / str(json.loads((target / _CACHE_MARKER).read_text())["model_dir"])
            staging = Path(tempfile.mkdtemp(prefix=f".{ref.version}-", dir=target.parent))
            try:
                # Resolved with our client: MLflow's models:/ resolution reads the process-global
                # registry URI.
                download_uri = self.client.get_model_version_download_uri(ref.name, ref.version)
                local = download_artifacts(
                    artifact_uri=download_uri,
                    dst_path=str(staging),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
                model_dir = Path(local).relative_to(staging).as_posix()
                (staging / _CACHE_MARKER).write_text(
                    json.dumps({"name": ref.name, "version": ref.version, "run_id": ref.run_id,
                                "tags": ref.tags, "aliases": list(ref.aliases), "model_dir": model_dir})
                )
                shutil.rmtree(target, ignore_errors=True)  # an incomplete copy (no marker)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return target / model_dir

    def _serving_pointer(self, name: str, alias: str) -> Path:
        return self.cache_dir / name / f"@{alias}.json"

    def mark_serving(self, ref: VersionRef, alias: str) -> None:
        """Remember which cached version was last served under ``alias`` (atomic replace)."""
        pointer = self._serving_pointer(ref.name, alias)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        staging = pointer.with_suffix(".tmp")
        staging.write_text(json.dumps({"version": ref.version}))
        os.replace(staging, pointer)

    def _cached_ref(self, name: str, version: str) -> VersionRef | None:
        marker = self.cached_path(name, version) / _CACHE_MARKER
        if not marker.exists():
            return None
        meta = json.loads(marker.read_text())
        return VersionRef(
            name=meta["name"], version=meta["version"], run_id=meta.get("run_id"), source="cache",
            aliases=tuple(meta.get("aliases", ())), tags=meta.get("tags", {}), via="cache",
        )

    def last_cached(self, name: str, alias: str) -> VersionRef | None:
        """The version last served under ``alias``, else the newest cached one that carried it."""
        root = self.cache_dir / name
        if not root.is_dir():
            return None
        pointer = self._serving_pointer(name, alias)
        if pointer.exists():
            ref = self._cached_ref(name, json.loads(pointer.read_text())["version"])
            if ref is not None:
                return ref
        candidates = []
        for marker in root.glob(f"*/{_CACHE_MARKER}"):
            meta = json.loads(marker.read_text())
            candidates.append((marker.stat().st_mtime, meta))
        for _, meta in sorted(candidates, key=lambda c: c[0], reverse=True):
            if alias in meta.get("aliases", []):
                return VersionRef(
                    name=meta["name"], version=meta["version"], run_id=meta.get("run_id"),
                    source="cache", aliases=tuple(meta["aliases"]), tags=meta.get("tags", {}),
                    via="cache",
                )
        return None
