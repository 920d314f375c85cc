"""``train --dry-run``: train and evaluate a candidate, and say what registering it would do.

Nothing is written anywhere: no MLflow run, no registered version, no tag or alias, no
``training_run`` row. The candidate is saved in MLflow's format to a temporary directory so the
promotion policy loads and checks the very files a registration would upload; the semver is the
one ``assign_semver`` would pick. The registry is only read. Blocking: run it in a thread.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn
import pandas as pd

from app.config import Settings
from app.lifecycle.policy import PolicyDecision, PromotionPolicy
from app.lifecycle.versioning import ChangeType, plan_semver, production_ref, version_tags
from app.registry.client import ModelRegistry, VersionRef
from app.serving.loaded_model import REFERENCE_FILE
from app.training.fit import Progress, fit_and_evaluate, model_format, no_progress

CANDIDATE = "candidate"  # the name the unregistered version goes by in the report


@dataclass
class DryRunResult:
    model_name: str
    metrics: dict[str, float]
    params: dict[str, object]
    rows: int
    semver: str
    change_type: str | None
    production: str | None
    decision: PolicyDecision


def dry_run(settings: Settings, registry: ModelRegistry, *, data: pd.DataFrame | None = None,
            rows: int | None = None, seed: int | None = None, bump: ChangeType | None = None,
            progress: Progress = no_progress) -> DryRunResult:
    name = settings.model.name
    fitted = fit_and_evaluate(settings, data, rows, seed, progress)  # then: nothing to log
    record = plan_semver(registry, name, settings.model.alias, None,
                         fitted.record("", settings.training.algorithm), bump=bump)
    production = production_ref(registry, name, settings.model.alias)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        stored_as = model_format(fitted, Path(tmp) / REFERENCE_FILE)
        mlflow.sklearn.save_model(fitted.model, str(model_dir), **stored_as)
        candidate = VersionRef(name=name, version=CANDIDATE, run_id=None, source=str(model_dir),
                               tags=version_tags(record))
        decision = PromotionPolicy(registry=registry, settings=settings.lifecycle).evaluate(
            candidate, production, model_path=model_dir)
    return DryRunResult(
        model_name=name, metrics=fitted.metrics, params=fitted.params, rows=len(fitted.data),
        semver=record.semver or "", change_type=record.change_type,
        production=production.version if production else None, decision=decision,
    )
