"""Request/response models of the retraining proposals (``/v1/models/{name}/proposals``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.models import MoveOut, Reason

ProposalStatus = Literal["open", "approved", "rejected"]


class ProposalOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str = Field(
        description="The candidate version (the challenger alias points at it while open)")
    base_version: str | None = Field(description="The Production version when it was proposed")
    run_id: str = Field(description="The MLflow run that trained the candidate")
    trigger: Literal["manual", "drift"]
    status: ProposalStatus
    window_start: datetime | None = Field(description="Predictions with feedback from here ...")
    window_end: datetime | None = Field(description="... to here joined the training data")
    data: dict[str, Any] = Field(description="Rows of each kind and their sample weights")
    metrics: dict[str, float] = Field(description="The candidate's held-out metrics (base rows)")
    detail: dict[str, Any] = Field(
        description="The drift report that triggered it (drift_report_id); refused approvals (refusals)")
    decided_at: datetime | None
    decided_by: str | None = Field(description="The admin token's name (or cli:<user>) that decided")
    decision_reason: str | None


class ProposalList(BaseModel):
    name: str
    proposals: list[ProposalOut]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = None


class ApprovalOut(BaseModel):
    proposal: ProposalOut
    move: MoveOut = Field(description="The promotion, as POST /v1/models/{name}/promote answers it")
