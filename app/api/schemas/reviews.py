"""Request/response models of human oversight: reviews and the review queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ml.features import Level
from app.oversight.reviews import MAX_REASON
from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "override"] = Field(
        description="accept: the model's level stands; override: `level` replaces it")
    level: Level | None = Field(
        None, description="Required for override (and different from the model's level); "
        "not allowed for accept")
    # SafeText(MAX_REASON), at least one character that is not a space.
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON, pattern=SAFE_TEXT_PATTERN,
                                 description="Why, on one line; kept with the review")]


class ReviewOut(BaseModel):
    id: uuid.UUID
    prediction_id: uuid.UUID
    reviewer: str = Field(description="The reviewer token's name, or admin:<name> for an admin token")
    decision: Literal["accept", "override"]
    level: Level = Field(description="The final decision's level")
    reason: str
    created_at: datetime


class ReviewProbabilities(BaseModel):
    LOW: float
    MEDIUM: float
    HIGH: float


class QueueItemOut(BaseModel):
    prediction_id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    level: Level
    probabilities: ReviewProbabilities
    confidence: float = Field(description="The predicted level's probability")


class ReviewQueueOut(BaseModel):
    items: list[QueueItemOut] = Field(description="Oldest first")
    pending: int = Field(description="Flagged predictions not reviewed yet, in all pages")
    next_after: uuid.UUID | None = Field(
        description="Pass as `after` for the next page; null on the last page")
