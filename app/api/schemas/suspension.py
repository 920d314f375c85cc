"""Request/response models of the stop switch (``/v1/models/{name}/suspend`` and ``/resume``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN

_CLEAN = SAFE_TEXT_PATTERN[1:-2]  # the safe-text rule's character class, "[^<controls>]"
# Safe text with at least one character that is not a space: a stop needs a stated reason.
_NON_BLANK = rf"^{_CLEAN}*[^ {_CLEAN[2:]}{_CLEAN}*$"

SuspendReason = Annotated[str, Field(
    min_length=1, max_length=500, pattern=_NON_BLANK,
    description="Why the model is stopped, on one line: every refused caller sees it; kept in the audit",
)]


# Like the promotion audit's reason (app.api.schemas.models.Reason), which imports this module.
ResumeReason = Annotated[
    Annotated[str, Field(max_length=500, pattern=SAFE_TEXT_PATTERN)] | None,
    Field(description="Why, on one line; kept in the audit"),
]


class SuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: SuspendReason


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ResumeReason = None


class SuspensionOut(BaseModel):
    """The stop switch as this worker applies it (readiness, the model read)."""

    reason: str
    since: datetime
    by: str = Field(description="The admin token's name (or cli:<user>) that suspended the model")


class SwitchOut(BaseModel):
    name: str
    suspended: bool
    reason: str | None = Field(description="The reason of the last change")
    changed_by: str | None
    changed_at: datetime | None = Field(description="When the switch last changed (null: never)")
    changed: bool = Field(
        description="False when the model already was in the state asked for: nothing changed "
        "(the original reason and time are kept); the attempt is audited all the same")
