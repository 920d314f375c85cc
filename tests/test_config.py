"""Settings: durations parsed once at load, one grammar, and validators that need no service."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest
from pydantic import ValidationError

from app.config import (
    DRIFT_METHODS,
    NUMERIC_ONLY_DRIFT_METHODS,
    DriftSettings,
    Duration,
    HealthSettings,
    parse_duration,
)
from app.config.durations import InvalidDuration
from app.prediction_log.retention import parse_age


@pytest.mark.parametrize(("text", "expected"), [
    ("90d", timedelta(days=90)), ("24h", timedelta(hours=24)), ("30m", timedelta(minutes=30)),
    ("10s", timedelta(seconds=10)), ("1w", timedelta(weeks=1)), (" 2 h ", timedelta(hours=2)),
    ("007d", timedelta(days=7)), ("1.5h", timedelta(minutes=90)),
])
def test_parse_duration_reads_each_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "ninety", "0h", "-1h", "5y", "1h30m", "10000w"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["999999999999d", "1" + "0" * 400 + "w"])
def test_a_duration_past_timedeltas_range_is_refused_not_an_overflow(text: str) -> None:
    # Beyond timedelta's range (the second one reads as float inf): not an OverflowError.
    with pytest.raises(InvalidDuration, match="at most 9999 weeks"):
        parse_duration(text)


def test_a_huge_duration_setting_refuses_to_load_with_a_message(monkeypatch) -> None:
    monkeypatch.setenv("FS_DRIFT_CHECK_WINDOW", "999999999999d")
    with pytest.raises(ValidationError, match=r"check_window[\s\S]*at most 9999 weeks"):
        DriftSettings()


def test_bare_seconds_and_zero_only_when_asked() -> None:
    assert parse_duration("45", bare_seconds=True) == timedelta(seconds=45)
    assert parse_age("0d") == timedelta(0)  # --older-than 0d: everything
    with pytest.raises(ValueError):
        parse_age("ninety")


def test_duration_settings_are_parsed_at_load_and_keep_their_text(monkeypatch) -> None:
    monkeypatch.setenv("FS_HEALTH_WINDOW", "2d")
    health = HealthSettings()
    assert isinstance(health.window, Duration)
    assert health.window.timedelta == timedelta(days=2) and health.window.seconds == 172800
    assert str(health.window) == "2d" and f"{health.latency_window}" == "1h"
    assert health.drift_max_age.timedelta == timedelta(hours=48)  # defaults are Durations too
    assert pickle.loads(pickle.dumps(health)).window.timedelta == timedelta(days=2)


@pytest.mark.parametrize("value", ["24", "soon", "0h"])
def test_a_bad_duration_setting_refuses_to_load(monkeypatch, value: str) -> None:
    monkeypatch.setenv("FS_DRIFT_CHECK_WINDOW", value)
    with pytest.raises(ValidationError, match="check_window"):
        DriftSettings()


def test_drift_methods_are_checked_without_the_monitoring_package() -> None:
    with pytest.raises(ValidationError, match="unknown drift method"):
        DriftSettings(methods={"trend_score": "nope"})
    with pytest.raises(ValidationError, match="needs a numeric feature"):
        DriftSettings(methods={"department": "ks"})
    with pytest.raises(ValidationError, match="unknown feature"):
        DriftSettings(thresholds={"no_such_feature": 0.1})
    assert DriftSettings(methods={"trend_score": "psi"}).methods == {"trend_score": "psi"}


def test_the_settings_name_the_drift_tests_monitoring_has() -> None:
    from app.monitoring.drift_tests import METHODS, NUMERIC_ONLY

    assert set(DRIFT_METHODS) == set(METHODS)
    assert set(NUMERIC_ONLY_DRIFT_METHODS) == set(NUMERIC_ONLY)
