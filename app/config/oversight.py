"""Settings of human oversight: who may review predictions, and which ones are flagged for review."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.config.access import parse_admin_tokens
from app.config.base import group

# prediction_review.reviewer is String(100); admins are stored as "admin:<name>".
MAX_REVIEWER_NAME = 64


class OversightSettings(BaseSettings):
    # Like the admin tokens: a malformed value is never echoed in a startup error.
    model_config = group("FS_") | SettingsConfigDict(hide_input_in_errors=True)

    reviewer_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description="Named bearer tokens of the people who review predictions (same grammar as "
        "FS_ADMIN_TOKENS; admin tokens may review too). Reviews record the name",
    )
    review_confidence_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="A prediction whose predicted level has a lower probability is flagged "
        "needs_review and listed in the review queue; 0 flags none",
    )

    @field_validator("reviewer_tokens", mode="before")
    @classmethod
    def _parse(cls, value: object) -> dict[str, SecretStr]:
        tokens = parse_admin_tokens(value, setting="FS_REVIEWER_TOKENS", role="reviewer")
        for name in tokens:
            # The name is what a review records; ':' is kept for the "admin:" prefix.
            if ":" in name or len(name) > MAX_REVIEWER_NAME:
                raise ValueError(
                    f"reviewer names must be at most {MAX_REVIEWER_NAME} characters without ':'"
                )
        return tokens
