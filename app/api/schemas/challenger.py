"""The challenger comparison (GET /v1/models/{name}/challenger)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.models import Reason
from app.api.schemas.monitoring import Estimated


class ScoredOut(BaseModel):
    accuracy: float
    f1_macro: float


class LatencyOut(BaseModel):
    p50_ms: float | None
    p95_ms: float | None


class SideOut(BaseModel):
    feedback: ScoredOut | None = Field(description="On the compared rows with feedback (latest wins)")
    estimated: Estimated | None = Field(
        description="Label-free estimate on all compared rows (calibrated confidence)")
    latency: LatencyOut = Field(
        description="Production: each request's prediction time; challenger: each shadow call's, "
        "which scores a batch of requests' rows at once")


class ChallengerStateOut(BaseModel):
    alias: str
    version: str | None = Field(description="The version the alias points at (None: not set)")
    loaded: bool = Field(description="This worker has it loaded beside Production")
    shadow: bool = Field(description="FS_CHALLENGER_SHADOW")
    canary_percent: float = Field(description="FS_CHALLENGER_CANARY_PERCENT")


class ComparisonOut(BaseModel):
    model_name: str
    challenger_version: str
    window: dict[str, str]
    champion_versions: list[str] = Field(description="Production versions whose rows it shadowed")
    rows_shadow_scored: int
    rows_compared: int = Field(description="Shadow-scored rows whose prediction is in the database")
    agreement_rate: float | None = Field(description="Share of compared rows with equal levels")
    confusion: dict[str, dict[str, int]] = Field(
        description="confusion[Production level][challenger level]: row counts")
    rows_with_feedback: int
    champion: SideOut
    challenger: SideOut
    canary_predictions: int = Field(description="Predictions the challenger answered as canary")
    uncalibrated_versions: list[str]
    state: ChallengerStateOut


class ChallengerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, Field(pattern=r"^[0-9]{1,10}$", description="Registry version number")]
    reason: Reason = None


class ChallengerClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = None


class ChallengerChangeOut(BaseModel):
    name: str
    alias: str
    challenger: str | None = Field(description="The version the alias names now (None: removed)")
    previous: str | None
