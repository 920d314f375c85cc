"""Who may call what: client API keys, CORS, the admin tokens."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.config.base import group


class SecuritySettings(BaseSettings):
    model_config = group("FS_")

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys for prediction routes (X-API-Key); empty: no key needed",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS"
    )
    docs_enabled: bool = Field(default=True, description="Serve /docs and /openapi.json")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("FS_CORS_ORIGINS must list explicit origins, not '*'")
        return value


def parse_admin_tokens(
    value: object, *, setting: str = "FS_ADMIN_TOKENS", role: str = "admin"
) -> dict[str, SecretStr]:
    """``name:token,name2:token2`` or a JSON object ``{"name": "token"}``; names are what audits show.

    ``setting`` and ``role`` only word the errors (the reviewer tokens share this grammar)."""
    pairs: list[tuple[object, object]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            pairs = list(json.loads(text).items())
        else:
            pairs = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, token = part.partition(":")
                if not sep or not name.strip() or not token.strip():
                    raise ValueError(f"{setting} entries must look like name:token")
                pairs.append((name.strip(), token.strip()))
    else:
        raise ValueError(f"{setting} must be 'name:token,...' or a JSON object")
    tokens: dict[str, SecretStr] = {}
    for key, value_ in pairs:
        secret = value_ if isinstance(value_, SecretStr) else SecretStr(str(value_))
        if len(secret.get_secret_value()) < 8:
            raise ValueError(f"{role} token {key!r} is shorter than 8 characters")
        tokens[str(key)] = secret
    return tokens


class AdminSettings(BaseSettings):
    # A malformed value must never be echoed in a startup error: it may hold a token.
    model_config = group("FS_") | SettingsConfigDict(hide_input_in_errors=True)

    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description="Named bearer tokens for the admin API"
    )

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _parse(cls, value: object) -> dict[str, SecretStr]:
        return parse_admin_tokens(value)
