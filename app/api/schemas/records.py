"""The decision record of one prediction (``GET /v1/predictions/{id}/record``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.api.schemas.explanations import ExplanationOut
from app.api.schemas.predictions import Probabilities
from app.api.schemas.reviews import ReviewOut
from app.ml.features import Level


class RecordOutput(BaseModel):
    level: Level
    score: float = Field(description="Need score 0-100")
    probabilities: Probabilities
    needs_review: bool = Field(description="Flagged for review when it was made")
    latency_ms: float


class RecordModel(BaseModel):
    name: str
    version: str = Field(description="The registry version that made the prediction")
    semver: str | None
    run_id: str | None = Field(description="The MLflow run that trained the version")
    note: str | None = Field(description="Why semver or run id is missing, when one is")


class RecordFeedback(BaseModel):
    prediction_id: uuid.UUID
    actual_level: Level
    created_at: datetime


class DecisionRecordOut(BaseModel):
    prediction_id: uuid.UUID
    created_at: datetime
    request_id: str | None = Field(description="The X-Request-ID of the request that made it")
    protocol: str | None = Field(description="v1, mlflow (/invocations) or v2")
    subject_pseudonymized: bool = Field(
        description="A subject id came with the request (stored only as a keyed pseudonym)")
    input: dict[str, Any] = Field(description="The validated input row")
    output: RecordOutput
    model: RecordModel
    explanation: ExplanationOut | None = Field(
        description="The stored explanation (computed now if it never was); null when none can "
        "be given, with explanation_note saying why")
    explanation_note: str | None
    reviews: list[ReviewOut] = Field(description="Oldest first")
    final_level: Level = Field(description="The latest review's level, else the model's")
    feedback: list[RecordFeedback] = Field(description="Every submission, oldest first; the latest counts")
    generated_at: datetime
