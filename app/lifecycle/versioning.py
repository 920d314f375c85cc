"""Semantic versions for registered model versions, detected from what changed.

Every registered version carries a validated ``VersionRecord`` (as the ``fs.record`` tag) and a
``semver`` tag. The change type is computed against the current Production version:
MAJOR when the input/output signature differs, MINOR when the algorithm or its hyperparameters
differ, PATCH when only the data differs. The first version is 1.0.0. Blocking (MLflow client).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Literal

import semver
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.errors import ModelNotFound
from app.ml.features import FEATURE_NAMES
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import load_from_path

log = logging.getLogger(__name__)

ChangeType = Literal["major", "minor", "patch"]
CHANGE_TYPES: tuple[ChangeType, ...] = ("major", "minor", "patch")
FIRST_SEMVER = "1.0.0"
RECORD_TAG = "fs.record"
# Estimator parameters that say how a fit was run, not what model it is.
_NOT_HYPERPARAMETERS = {"random_state", "n_jobs", "verbose", "warm_start"}


class VersionRecord(BaseModel):
    """What a version is: validated before it is written to the registry."""

    run_id: str
    metrics: dict[str, float]
    training_rows: int = Field(ge=1)
    features: list[str] = Field(min_length=1)
    classes: list[str] = Field(min_length=2)
    algorithm: str
    hyperparameters: dict[str, str | int | float | bool | None]
    signature: str = Field(description="Fingerprint of the input/output signature")
    parent_version: str | None = None
    semver: str | None = None
    change_type: ChangeType | None = None
    bump_overridden: bool = False

    @field_validator("metrics")
    @classmethod
    def _unit_interval(cls, metrics: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in metrics.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"metrics outside [0, 1]: {', '.join(sorted(bad))}")
        return metrics

    @property
    def hyperparameters_key(self) -> str:
        return json.dumps({"algorithm": self.algorithm, **self.hyperparameters}, sort_keys=True)


def signature_fingerprint(signature: Any) -> str:
    """A short stable hash of a model signature's inputs and outputs (None -> 'none')."""
    if signature is None:
        return "none"
    data = signature.to_dict()
    text = json.dumps({"inputs": data.get("inputs"), "outputs": data.get("outputs")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hyperparameters_of(estimator: Any) -> dict[str, str | int | float | bool | None]:
    """The classifier's own parameters, JSON-safe, without the ones that only steer the fit."""
    params = estimator.get_params(deep=False)
    out: dict[str, str | int | float | bool | None] = {}
    for key in sorted(params):
        if key in _NOT_HYPERPARAMETERS:
            continue
        value = params[key]
        out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return out


def detect_change(candidate: VersionRecord, production: VersionRecord | None) -> ChangeType | None:
    """None when there is no Production version to compare with (a first version)."""
    if production is None:
        return None
    if candidate.signature != production.signature or candidate.classes != production.classes:
        return "major"
    if candidate.hyperparameters_key != production.hyperparameters_key:
        return "minor"
    return "patch"


def next_semver(base: str | None, change: ChangeType | None, taken: set[str]) -> str:
    """Bump ``base`` by ``change``; bump again while the result is taken by another version."""
    if base is None or change is None:
        candidate = semver.Version.parse(FIRST_SEMVER)
        while str(candidate) in taken:
            candidate = candidate.bump_major()
        return str(candidate)
    bump = {"major": "bump_major", "minor": "bump_minor", "patch": "bump_patch"}[change]
    candidate = getattr(semver.Version.parse(base), bump)()
    while str(candidate) in taken:
        candidate = getattr(candidate, bump)()
    return str(candidate)


def read_record(registry: ModelRegistry, ref: VersionRef) -> VersionRecord | None:
    """The version's record from its tag, else rebuilt from its run and MLmodel (older versions)."""
    raw = ref.tags.get(RECORD_TAG)
    if raw:
        try:
            return VersionRecord.model_validate_json(raw)
        except ValidationError:
            log.warning("version %s of %s has an invalid %s tag", ref.version, ref.name, RECORD_TAG)
    if not ref.run_id:
        return None
    try:
        run = registry.client.get_run(ref.run_id)
        model = load_from_path(ref, registry.download(ref))
    except Exception as exc:  # an unreadable old version: no record rather than a guessed one
        log.warning("cannot describe version %s of %s: %s", ref.version, ref.name, type(exc).__name__)
        return None
    params = dict(run.data.params)
    signature = model.signature
    pipeline: Any = model.fitted()  # a fitted scikit-learn Pipeline (untyped)
    return VersionRecord(
        run_id=ref.run_id,
        metrics={k: v for k, v in run.data.metrics.items() if 0.0 <= v <= 1.0},
        training_rows=int(params.get("rows", 1)),
        features=signature.inputs.input_names() if signature else list(FEATURE_NAMES),
        classes=[str(c) for c in pipeline.classes_],
        algorithm=params.get("algorithm", "unknown"),
        hyperparameters=hyperparameters_of(pipeline[-1]),
        signature=signature_fingerprint(signature),
        semver=ref.semver,
    )


def production_ref(registry: ModelRegistry, name: str, alias: str) -> VersionRef | None:
    try:
        return registry.resolve(name, alias)
    except ModelNotFound:
        return None


def assign_semver(
    registry: ModelRegistry,
    name: str,
    alias: str,
    version: str,
    record: VersionRecord,
    bump: ChangeType | None = None,
) -> VersionRecord:
    """Detect the change against Production, pick the semver, write record and tags to the version."""
    record = plan_semver(registry, name, alias, version, record, bump)
    for key, value in version_tags(record).items():
        registry.client.set_model_version_tag(name, version, key, value)
    log.info("version %s of %s is %s (%s)", version, name, record.semver,
             record.change_type or "first version")
    return record


def version_tags(record: VersionRecord) -> dict[str, str]:
    """The registry tags that carry a planned record."""
    return {
        "semver": record.semver or "", "change_type": record.change_type or "initial",
        "parent_version": record.parent_version or "", "signature": record.signature,
        RECORD_TAG: record.model_dump_json(),
    }


def plan_semver(
    registry: ModelRegistry,
    name: str,
    alias: str,
    version: str | None,
    record: VersionRecord,
    bump: ChangeType | None = None,
) -> VersionRecord:
    """The record ``assign_semver`` would write, without writing anything (``version`` None: a
    candidate that is not registered, as in a dry run)."""
    prod = production_ref(registry, name, alias)
    prod_record = read_record(registry, prod) if prod is not None and prod.version != version else None
    detected = detect_change(record, prod_record)
    change = bump or detected
    taken = {v.semver for v in registry.list_versions(name) if v.semver and v.version != version}
    base = prod.semver if prod is not None and prod.version != version else None
    if base is None and taken:  # no Production to compare with: continue after the highest
        base = str(max(semver.Version.parse(t) for t in taken))
        change = change or "major"
    record = record.model_copy(update={
        "semver": next_semver(base, change, taken),
        "change_type": change,
        "parent_version": prod.version if prod is not None and prod.version != version else None,
        "bump_overridden": bump is not None and bump != detected,
    })
    return VersionRecord.model_validate(record.model_dump())  # re-validate the final record
