"""FS_REVIEWER_TOKENS and FS_REVIEW_CONFIDENCE_THRESHOLD (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import OversightSettings


def test_reviewer_tokens_share_the_admin_grammar(monkeypatch):
    monkeypatch.setenv("FS_REVIEWER_TOKENS", "bob:tok-bob-0001, carol:tok-carol-02")
    settings = OversightSettings()
    assert set(settings.reviewer_tokens) == {"bob", "carol"}
    assert "tok-bob-0001" not in str(settings) and "tok-bob-0001" not in repr(settings.reviewer_tokens)
    monkeypatch.setenv("FS_REVIEWER_TOKENS", '{"dan": "tok-dan-0003"}')
    assert OversightSettings().reviewer_tokens["dan"].get_secret_value() == "tok-dan-0003"
    assert OversightSettings().review_confidence_threshold == 0.5


@pytest.mark.parametrize("value", [
    "bob:tok-bob-0001,carol", "bob:sh0rt", '{"admin:x": "tok-bob-0001"}', f'{{"{"n" * 65}": "tok-bob-0001"}}',
])
def test_malformed_reviewer_tokens_are_refused_without_echoing_them(monkeypatch, value):
    monkeypatch.setenv("FS_REVIEWER_TOKENS", value)
    with pytest.raises(ValidationError) as error:
        OversightSettings()
    message = str(error.value)
    assert "input_value" not in message and "tok-bob-0001" not in message and "sh0rt" not in message
    assert "FS_ADMIN_TOKENS" not in message


@pytest.mark.parametrize("value", ["-0.1", "1.5", "high"])
def test_the_threshold_is_a_probability(monkeypatch, value):
    monkeypatch.setenv("FS_REVIEW_CONFIDENCE_THRESHOLD", value)
    with pytest.raises(ValidationError):
        OversightSettings()
