"""Request/response models of the model lifecycle API (``/v1/models``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.suspension import SuspensionOut
from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN

# SafeText(500), spelled out so type checkers see a str
Reason = Annotated[
    Annotated[str, Field(max_length=500, pattern=SAFE_TEXT_PATTERN)] | None,
    Field(description="Why, on one line; kept in the audit"),
]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, Field(pattern=r"^[0-9]{1,10}$", description="Registry version number")]
    reason: Reason = None
    force: bool = Field(False, description="Skip the promotion policy (still audited)")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = None


class VersionOut(BaseModel):
    version: str
    semver: str | None
    change_type: str | None
    aliases: list[str]
    stage: str | None
    run_id: str | None
    created_at: str | None
    metrics: dict[str, float]
    parent_version: str | None
    archived: bool


class ServingOut(BaseModel):
    version: str
    semver: str | None
    resolved_via: str


class ModelOut(BaseModel):
    name: str
    alias: str
    production: VersionOut | None
    previous_production: str | None = Field(description="The version a rollback would return to")
    latest_version: str | None
    version_count: int
    serving: ServingOut | None = Field(None, description="What this worker serves right now")
    suspended: SuspensionOut | None = Field(
        None, description="Set while the stop switch refuses predictions (as this worker knows it)")


class VersionList(BaseModel):
    name: str
    versions: list[VersionOut]


class PromotionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    actor: str
    action: str
    from_version: str | None
    to_version: str | None
    reason: str | None
    outcome: str
    detail: str | None


class PromotionList(BaseModel):
    name: str
    promotions: list[PromotionOut]


class ReloadOut(BaseModel):
    outcome: str
    serving: str | None
    target: str | None = None
    detail: str | None = None


class MoveOut(BaseModel):
    name: str
    action: str
    from_version: str | None
    to_version: str
    decision: dict[str, Any] | None = None
    reload: ReloadOut | None = Field(None, description="This worker's reload right after the move")
