"""Semantic versions detected from what changed, and the promotion policy's decisions."""

from __future__ import annotations

import sqlite3

import pytest
from mlflow import MlflowClient
from pydantic import ValidationError

from app.config import LifecycleSettings
from app.lifecycle.history import (
    HISTORY_MAX,
    after_promotion,
    after_rollback,
    history_of,
    rollback_target,
)
from app.lifecycle.policy import PromotionPolicy
from app.lifecycle.versioning import (
    RECORD_TAG,
    VersionRecord,
    assign_semver,
    detect_change,
    next_semver,
    read_record,
)
from app.ml.features import FEATURE_NAMES, LEVELS
from app.registry.client import ModelRegistry
from tests.support.lifecycle import (
    MODEL,
    lifecycle_settings,
)


def _registry(settings) -> ModelRegistry:
    return ModelRegistry(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri,
                         artifact_root=settings.artifact_root, cache_dir=settings.model_cache_dir)


def _new_version(registry: ModelRegistry) -> str:
    """Another registered version backed by version 1's real model files (no training needed)."""
    v1 = registry.client.get_model_version(MODEL, "1")
    source = registry.client.get_model_version_download_uri(MODEL, "1")
    return str(registry.client.create_model_version(MODEL, source, run_id=v1.run_id).version)


def test_first_version_becoming_production_is_audited(lifecycle_template):
    with sqlite3.connect(lifecycle_template / "predictions.db") as db:
        rows = db.execute("SELECT actor, action, from_version, to_version, outcome, detail"
                          " FROM model_promotion").fetchall()
    assert rows == [("training", "auto", None, "1", "success", "semver 1.0.0")]


def test_trained_versions_carry_a_validated_record_and_semver(lifecycle_dir):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    v1, v2 = (registry.get_version(MODEL, v) for v in ("1", "2"))
    assert (v1.semver, v1.tags["change_type"]) == ("1.0.0", "initial")
    # Version 2 was trained with other hyperparameters (10 trees instead of 1): MINOR.
    assert (v2.semver, v2.tags["change_type"], v2.tags["parent_version"]) == ("1.1.0", "minor", "1")
    record = VersionRecord.model_validate_json(v2.tags[RECORD_TAG])
    assert record.features == list(FEATURE_NAMES)
    assert sorted(record.classes) == sorted(LEVELS)
    assert record.training_rows == 1600  # 2000 rows minus the 20 % held out
    assert record.hyperparameters["n_estimators"] == 10 and record.algorithm == "random_forest"
    assert record.run_id == v2.run_id and record.parent_version == "1"
    assert all(0.0 <= value <= 1.0 for value in record.metrics.values())
    assert record.signature == v2.tags["signature"] == v1.tags["signature"]


def test_record_rejects_metrics_outside_the_unit_interval(lifecycle_dir):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    record = read_record(registry, registry.get_version(MODEL, "1"))
    with pytest.raises(ValidationError, match="metrics outside"):
        VersionRecord.model_validate(record.model_dump() | {"metrics": {"f1_macro": 1.2}})


def test_semver_bumps_follow_the_detected_change(lifecycle_dir):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    prod = read_record(registry, registry.get_version(MODEL, "1"))

    def register(record: VersionRecord, bump=None) -> VersionRecord:
        return assign_semver(registry, MODEL, "production", _new_version(registry), record, bump)

    patch = register(prod.model_copy(update={"training_rows": prod.training_rows + 500}))
    assert (patch.semver, patch.change_type, patch.parent_version) == ("1.0.1", "patch", "1")
    again = register(prod.model_copy(update={"training_rows": 99}))
    assert again.semver == "1.0.2"  # 1.0.1 is taken
    minor = register(prod.model_copy(update={"hyperparameters": prod.hyperparameters | {"max_depth": 6}}))
    assert (minor.semver, minor.change_type) == ("1.2.0", "minor")  # 1.1.0 is version 2's
    algorithm = register(prod.model_copy(update={"algorithm": "gradient_boosting"}))
    assert (algorithm.semver, algorithm.change_type) == ("1.3.0", "minor")
    major = register(prod.model_copy(update={"signature": "0123456789abcdef"}))
    assert (major.semver, major.change_type) == ("2.0.0", "major")
    classes = register(prod.model_copy(update={"classes": ["LOW", "HIGH"]}))
    assert (classes.semver, classes.change_type) == ("3.0.0", "major")
    forced = register(prod.model_copy(update={"signature": "fedcba9876543210"}), bump="patch")
    assert (forced.semver, forced.change_type, forced.bump_overridden) == ("1.0.3", "patch", True)


def test_detect_change_and_next_semver():
    base = VersionRecord(run_id="r", metrics={"f1_macro": 0.5}, training_rows=10, features=["a"],
                         classes=["LOW", "HIGH"], algorithm="random_forest",
                         hyperparameters={"n_estimators": 10}, signature="s1")
    assert detect_change(base, None) is None
    assert detect_change(base.model_copy(update={"training_rows": 20}), base) == "patch"
    assert detect_change(base.model_copy(update={"hyperparameters": {"n_estimators": 5}}), base) == "minor"
    assert detect_change(base.model_copy(update={"signature": "s2"}), base) == "major"
    assert next_semver(None, None, set()) == "1.0.0"
    assert next_semver("1.4.2", "major", set()) == "2.0.0"
    assert next_semver("1.4.2", "minor", {"1.5.0"}) == "1.6.0"
    assert next_semver("1.4.2", "patch", {"1.4.3", "1.4.4"}) == "1.4.5"


def test_policy_promotes_a_better_candidate_and_refuses_a_worse_one(lifecycle_dir):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    policy = PromotionPolicy(registry=registry, settings=LifecycleSettings())
    v1, v2 = (registry.get_version(MODEL, v) for v in ("1", "2"))

    better = policy.evaluate(v2, v1)
    assert better.promote, better.reason
    assert [c.name for c in better.checks] == ["loads", "predicts_reference", "signature", "metric"]
    assert better.candidate_value > better.production_value
    assert better.reason.startswith("all checks passed") and better.change_type == "minor"

    worse = policy.evaluate(v1, v2)  # as if version 2 were Production
    assert not worse.promote
    assert "f1_macro" in worse.reason and "gain -" in worse.reason

    gain = better.candidate_value - better.production_value
    strict_settings = LifecycleSettings(min_improvement=gain + 0.01)
    strict = PromotionPolicy(registry=registry, settings=strict_settings).evaluate(v2, v1)
    assert not strict.promote and "needed > 0 and >=" in strict.reason
    relative = LifecycleSettings(min_relative_improvement=(gain / better.production_value) * 2)
    assert not PromotionPolicy(registry=registry, settings=relative).evaluate(v2, v1).promote
    loose = LifecycleSettings(min_improvement=gain / 2, min_relative_improvement=gain / 4)
    assert PromotionPolicy(registry=registry, settings=loose).evaluate(v2, v1).promote


def test_policy_refuses_a_major_change_unless_allowed(lifecycle_dir):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    v2 = registry.get_version(MODEL, "2")
    record = read_record(registry, v2).model_copy(update={"signature": "0000000000000000"})
    version = _new_version(registry)  # version 1's model files, presented with version 2's metrics
    MlflowClient(registry.tracking_uri, registry.registry_uri).set_model_version_tag(
        MODEL, version, RECORD_TAG, record.model_dump_json())
    candidate, prod = registry.get_version(MODEL, version), registry.get_version(MODEL, "1")

    refused = PromotionPolicy(registry=registry, settings=LifecycleSettings()).evaluate(candidate, prod)
    assert not refused.promote and refused.change_type == "major"
    assert "MAJOR" in refused.reason and "FS_LIFECYCLE_ALLOW_MAJOR" in refused.reason
    allow_major = LifecycleSettings(allow_major=True)
    allowed = PromotionPolicy(registry=registry, settings=allow_major).evaluate(candidate, prod)
    assert allowed.promote, allowed.reason


def test_policy_refuses_a_version_that_does_not_load(lifecycle_dir, tmp_path):
    registry = _registry(lifecycle_settings(lifecycle_dir))
    v1 = registry.client.get_model_version(MODEL, "1")
    missing = (tmp_path / "nothing-here").as_uri()
    version = str(registry.client.create_model_version(MODEL, missing, run_id=v1.run_id).version)
    decision = PromotionPolicy(registry=registry, settings=LifecycleSettings()).evaluate(
        registry.get_version(MODEL, version), registry.get_version(MODEL, "1"))
    assert not decision.promote
    assert [(c.name, c.passed) for c in decision.checks] == [("loads", False)]


def test_production_history_is_an_undo_stack():
    history: list[str] = []
    for before, after in ((None, "1"), ("1", "2"), ("2", "3")):
        history = after_promotion(history, before, after)
    assert history == ["1", "2", "3"]
    assert rollback_target(history, "3") == "2"
    history = after_rollback(history, "3")
    assert rollback_target(history, "2") == "1"
    history = after_rollback(history, "2")
    assert history == ["1"] and rollback_target(history, "1") is None
    # Moved outside our API (1 -> 7): rollback goes to what was replaced, a promotion records it.
    assert rollback_target(["1", "2"], "7") == "2" and after_rollback(["1", "2"], "7") == ["1", "2"]
    assert after_promotion(["1", "2"], "7", "8") == ["1", "2", "7", "8"]
    # Promoted back and forth: no rollback lands on the version already serving.
    assert rollback_target(["1", "2", "1"], "1") == "2"
    assert after_promotion([str(v) for v in range(HISTORY_MAX)], "49", "50")[0] == "1"
    assert history_of({"fs.production_history": "not json"}) == [] and history_of({}) == []
