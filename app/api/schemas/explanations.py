"""The explanation document of one prediction (docs/explanations.md), as the API documents it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.ml.features import Level


class LevelValues(BaseModel):
    LOW: float
    MEDIUM: float
    HIGH: float


class ExplainedModel(BaseModel):
    name: str
    version: str
    semver: str | None
    run_id: str | None


class FeatureContribution(BaseModel):
    feature: str = Field(description="An HR feature (a categorical's one-hot columns summed back to it)")
    value: str | int | float = Field(description="The input value of the prediction")
    contributions: LevelValues = Field(description="Its exact TreeSHAP value, per class")


class TopFactor(BaseModel):
    feature: str
    value: str | int | float
    contribution: float = Field(description="Its contribution to the predicted level's probability")
    direction: Literal["raises", "lowers"]


class ExplanationOut(BaseModel):
    prediction_id: uuid.UUID
    model: ExplainedModel = Field(description="The version that made the prediction")
    method: Literal["tree_path_dependent"] = Field(
        description="Exact path-dependent TreeSHAP (shap's feature_perturbation=\"tree_path_dependent\")"
    )
    level: Level = Field(description="The predicted level")
    probabilities: LevelValues = Field(
        description="The forest's probabilities (float64): base_values + contributions, per class"
    )
    base_values: LevelValues = Field(description="The forest's expected output, per class")
    contributions: list[FeatureContribution]
    top_factors: list[TopFactor] = Field(
        description="For the predicted level, largest |contribution| first (at most 5)"
    )
    summary: str = Field(description="One plain-language sentence")
    additivity_error: float = Field(
        description="max |base + contributions - probabilities| over the classes (at most 1e-6)"
    )
    computed_at: datetime
    logged_probabilities: LevelValues | None = Field(
        None, description="Present when the logged probabilities differ by more than 1e-6 (the "
        "compiled float32 path answered the prediction); see note"
    )
    note: str | None = None
