"""Response models of the per-group views (``GET /v1/performance/groups``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.api.schemas.monitoring import EstimateSummary, IsoText


class GroupWindow(BaseModel):
    start: IsoText
    end: IsoText


class GroupOut(BaseModel):
    group: str = Field(description="The group's value, e.g. a department's name")
    predictions: int
    level_share: dict[str, float] = Field(description="Share of each predicted level in the group")
    high_rate_ratio: float | None = Field(
        description="The group's share of HIGH over the overall share (1 = the same); null "
        "when the window has no HIGH prediction")
    feedback: int = Field(description="The group's predictions with feedback")
    accuracy: float | None = Field(description="Realized accuracy from feedback; null without")
    estimated: EstimateSummary | None = Field(
        description="Label-free estimate; null when no version in the window has calibration")


class GroupsOut(BaseModel):
    model_name: str
    model_version: str | None = Field(description="null: every version of the model")
    window: GroupWindow
    by: str
    predictions: int = Field(description="Every group's predictions together")
    high_rate: float | None = Field(description="The overall share of HIGH predictions")
    groups: list[GroupOut]
    uncalibrated_versions: list[str] = Field(
        description="Versions in the window trained without calibration maps: their rows are "
        "counted but not estimated")
