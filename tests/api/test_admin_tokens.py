"""FS_ADMIN_TOKENS parsing and constant-time matching (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.api.admin_auth import match_token
from app.config import AdminSettings


def test_tokens_parse_from_pairs_or_json(monkeypatch):
    monkeypatch.setenv("FS_ADMIN_TOKENS", "alice:tok-alice-1, ci:tok-ci-22")
    tokens = AdminSettings().admin_tokens
    assert set(tokens) == {"alice", "ci"}
    assert all(isinstance(t, SecretStr) for t in tokens.values())
    assert "tok-alice-1" not in repr(tokens) and "tok-alice-1" not in str(AdminSettings())
    monkeypatch.setenv("FS_ADMIN_TOKENS", '{"ops": "tok-ops-333"}')
    assert AdminSettings().admin_tokens["ops"].get_secret_value() == "tok-ops-333"
    monkeypatch.delenv("FS_ADMIN_TOKENS")
    assert AdminSettings().admin_tokens == {}


@pytest.mark.parametrize("value", ["alice:tok-alice-1,bob", "alice:short", "alice:tok-alice-1,:x-x-x-x-x-x"])
def test_malformed_tokens_are_refused_without_echoing_them(monkeypatch, value):
    monkeypatch.setenv("FS_ADMIN_TOKENS", value)
    with pytest.raises(ValidationError) as error:
        AdminSettings()
    message = str(error.value)
    assert "input_value" not in message and "tok-alice-1" not in message and "x-x-x" not in message


def test_match_token_returns_the_name_only_for_an_exact_match():
    tokens = {"alice": SecretStr("tok-alice-1"), "ci": SecretStr("tok-ci-22")}
    assert match_token(tokens, "tok-ci-22") == "ci"
    assert match_token(tokens, "tok-ci-2") is None
    assert match_token(tokens, "tok-ci-222") is None
    assert match_token({}, "anything") is None
