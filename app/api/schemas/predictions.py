"""Pydantic request/response models of the HR API, generated from the feature schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from app.api.schemas.explanations import ExplanationOut
from app.api.schemas.reviews import ReviewOut
from app.api.schemas.suspension import SuspensionOut
from app.config import Settings
from app.ml.features import Level
from app.serving.codecs.hygiene import SAFE_TEXT_PATTERN
from app.serving.codecs.item import EXAMPLE_ITEM, PredictionItem
from app.serving.core import PredictionOutcome


class PredictionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [EXAMPLE_ITEM]}]}
    )

    items: Annotated[list[PredictionItem], Field(min_length=1)]
    subject_id: Annotated[
        Annotated[str, Field(max_length=200, pattern=SAFE_TEXT_PATTERN)] | None,  # SafeText(200)
        Field(description="Employee or team id"),
    ] = None
    explain: StrictBool = Field(
        False, description="Also return each prediction's explanation (exact TreeSHAP, "
        "docs/explanations.md); at most FS_EXPLAIN_MAX_ITEMS items (default 10)",
    )


class Probabilities(BaseModel):
    LOW: float
    MEDIUM: float
    HIGH: float


class ModelRefOut(BaseModel):
    name: str
    version: str
    semver: str | None
    alias: str


def answered_by(outcome: PredictionOutcome, settings: Settings) -> dict[str, Any]:
    """The response's ``model``: the version that answered, and the alias it is served under
    (the challenger's for canary traffic)."""
    model = outcome.model
    alias = settings.challenger.alias if outcome.canary else settings.model.alias
    return {"name": model.name, "version": model.version, "semver": model.semver, "alias": alias}


class PredictionOut(BaseModel):
    prediction_id: uuid.UUID
    level: Level
    score: float = Field(description="Expected need, 0-100: 100 * (0.5 P(MEDIUM) + P(HIGH))")
    probabilities: Probabilities
    needs_review: bool = Field(
        description="Confidence below FS_REVIEW_CONFIDENCE_THRESHOLD: listed in the review queue")
    explanation: ExplanationOut | None = Field(None, description='Only with "explain": true')


class PredictionResponse(BaseModel):
    model: ModelRefOut
    predictions: list[PredictionOut]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actual_level: Level = Field(description="The level that turned out to be right")


class FeedbackOut(BaseModel):
    prediction_id: uuid.UUID
    actual_level: Level
    created_at: datetime


class LoggedFeedback(BaseModel):
    actual_level: Level
    created_at: datetime
    submissions: int = Field(description="Feedback received for this prediction; the latest counts")


class LoggedPrediction(BaseModel):
    prediction_id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    features: dict[str, Any]
    level: Level
    score: float
    probabilities: Probabilities
    latency_ms: float
    request_id: str | None
    protocol: str
    feedback: LoggedFeedback | None = None
    needs_review: bool = Field(False, description="Flagged for review when it was made")
    reviews: list[ReviewOut] = Field(default_factory=list, description="Reviews, oldest first")
    final_level: Level = Field(description="The latest review's level, else the model's")


class Liveness(BaseModel):
    status: str


class ServingModel(BaseModel):
    name: str
    version: str
    semver: str | None
    alias: str
    resolved_via: str = Field(description="alias, stage (legacy fallback) or cache (registry down)")
    predictor: Literal["onnx", "lean", "pipeline"] = Field(
        description="The prediction path in use (docs/predictors.md): the compiled forest, the lean "
        "path, or the pipeline itself"
    )


class Readiness(BaseModel):
    status: str
    model: ServingModel
    suspended: SuspensionOut | None = Field(
        None, description="Set while the stop switch refuses predictions; readiness stays 200 so "
        "callers get the 503 suspended with its reason (docs/stop-switch-and-erasure.md)")


class ErrorDetail(BaseModel):
    field: str
    type: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    """Every error of the HR API; submitted values are never echoed."""

    error: ErrorBody


_ERROR_DESCRIPTIONS = {
    400: "Invalid JSON",
    401: "API key or token missing",
    403: "API key or token not valid",
    404: "Not found",
    409: "Refused in the current state (for example by the promotion policy), with the reason",
    413: "Request body too large",
    415: "The request body is not JSON (Content-Type must be application/json)",
    422: "Validation failed; details name each offending field",
    503: "No model loaded, at capacity or shutting down (see Retry-After)",
    504: "The prediction did not finish within the deadline",
}


# FastAPI's ``responses`` argument.
Responses = dict[int | str, dict[str, Any]]


def error_responses(*codes: int) -> Responses:
    """OpenAPI ``responses`` entries for the given error status codes."""
    return {
        code: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]} for code in codes
    }


def json_error_responses(*codes: int) -> Responses:
    """The same for a route whose success is not JSON (FastAPI would file the error model under
    the route's own media type): the JSON error body is declared explicitly."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    return {
        code: {"description": _ERROR_DESCRIPTIONS[code], "content": {"application/json": {"schema": schema}}}
        for code in codes
    }


def _iso_datetime(value: Any) -> Any:
    """ISO 8601 only: pydantic would also read "0.5" as a Unix timestamp, which no client means."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("datetime_from_iso", "Input should be an ISO 8601 date-time") from None
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_datetime)]
