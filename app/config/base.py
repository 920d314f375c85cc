"""What every settings group shares: its own environment prefix, nothing read from a file."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

# Accepted only in development mode; production refuses to start with it.
DEV_PLACEHOLDER_SECRET = "change-me-in-production"


def group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_file=None)
