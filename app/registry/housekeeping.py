"""Runs and housekeeping with the MLflow client: search, compare, best run, old-run cleanup, archiving.

Blocking (MLflow client); used by the CLI. Destructive operations report what they would do unless
``apply`` is true; cleanup soft-deletes runs (MLflow's ``delete_run``, restorable until ``mlflow gc``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from app.errors import NotFound
from app.registry.client import ModelRegistry

ARCHIVED_STAGE = "Archived"


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
        "experiment_id": run.info.experiment_id, "start_time": run.info.start_time,
        "params": dict(run.data.params), "metrics": dict(run.data.metrics),
    }


@dataclass(kw_only=True)
class Housekeeping:
    registry: ModelRegistry

    @property
    def client(self) -> MlflowClient:
        return self.registry.client

    def _experiment_ids(self, experiments: list[str] | None) -> list[str]:
        if not experiments:
            return [e.experiment_id for e in self.client.search_experiments()]
        ids = []
        for name in experiments:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise NotFound(f"no experiment named {name!r}")
            ids.append(experiment.experiment_id)
        return ids

    def search(
        self, experiments: list[str] | None = None, filter_string: str = "",
        order_by: list[str] | None = None, max_results: int = 50,
    ) -> list[dict[str, Any]]:
        runs = self.client.search_runs(
            self._experiment_ids(experiments), filter_string=filter_string,
            order_by=order_by or ["attributes.start_time DESC"], max_results=max_results,
        )
        return [run_summary(run) for run in runs]

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        """Params and metrics side by side: {"runs": [...], "params": {key: [v per run]}, "metrics": ...}."""
        runs = [self.client.get_run(run_id) for run_id in run_ids]
        params = sorted({k for r in runs for k in r.data.params})
        metrics = sorted({k for r in runs for k in r.data.metrics})
        return {
            "runs": [r.info.run_id for r in runs],
            "params": {k: [r.data.params.get(k) for r in runs] for k in params},
            "metrics": {k: [r.data.metrics.get(k) for r in runs] for k in metrics},
        }

    def best(self, metric: str, experiments: list[str] | None = None, lowest: bool = False) -> dict[str, Any]:
        found = self.client.search_runs(
            self._experiment_ids(experiments),
            order_by=[f"metrics.`{metric}` {'ASC' if lowest else 'DESC'}"], max_results=1000,
        )
        runs = [r for r in found if metric in r.data.metrics]  # runs without it may sort first
        if not runs:
            raise NotFound(f"no run has the metric {metric!r}")
        pick = min if lowest else max
        return run_summary(pick(runs, key=lambda r: r.data.metrics[metric]))

    def old_runs(self, older_than_s: float, experiments: list[str] | None = None) -> list[dict[str, Any]]:
        """Active runs started before now - older_than, except runs behind a registered version."""
        cutoff_ms = int((time.time() - older_than_s) * 1000)
        protected = {v.run_id for v in self.client.search_model_versions() if v.run_id}
        runs = self.client.search_runs(
            self._experiment_ids(experiments), filter_string=f"attributes.start_time < {cutoff_ms}",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=50_000,
        )
        return [run_summary(r) for r in runs if r.info.run_id not in protected]

    def cleanup_runs(self, older_than_s: float, experiments: list[str] | None = None,
                     apply: bool = False) -> list[dict[str, Any]]:
        runs = self.old_runs(older_than_s, experiments)
        if apply:
            for run in runs:
                self.client.delete_run(run["run_id"])
        return runs

    def archive_versions(self, name: str, alias: str, keep: int, apply: bool = False) -> list[str]:
        """Archive all but the newest ``keep`` versions; aliased versions are never archived."""
        versions = self.registry.list_versions(name)
        if not versions:
            raise NotFound(f"no registered model {name!r}")
        recent = {v.version for v in versions[-keep:]}
        doomed = [
            v.version for v in versions
            if v.version not in recent and not v.aliases and alias not in v.aliases
            and v.tags.get("archived") != "true"
        ]
        if apply:
            for version in doomed:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    self.client.transition_model_version_stage(name, version, ARCHIVED_STAGE)
                self.client.set_model_version_tag(name, version, "archived", "true")
        return doomed
