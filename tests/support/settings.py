"""The one settings factory of the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import ExplanationSettings, ModelSettings, Settings, TrainingSettings

# Small but real: the tests need a trained forest, not the full 20k-row demo model.
# No compiled forest logged with test versions (seconds per training): each host converts on
# first load, the path most tests exercise; tests/serving/test_compiled_predictor.py logs one.
TEST_TRAINING = {"rows": 4000, "n_estimators": 40, "reference_rows": 1000, "compile_forest": False}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings on a private data dir (registry, artifacts, cache), fast polling, small training.

    Any group or field can be overridden; nothing is read from the caller's environment
    (tests/conftest.py clears FS_* before anything is imported).
    """
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "training": TrainingSettings(**TEST_TRAINING),
        "model": ModelSettings(poll_interval_s=0.5),
        # Not every app a test starts should build an explanation engine in the background.
        "explain": ExplanationSettings(warm_up=False),
    }
    fields.update(overrides)
    return Settings(**fields)
