"""Retraining proposals: read them (client key, like the other model reads), approve or reject
them (admin; approval is a promotion through the policy, both are audited). docs/retraining.md."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.admin_auth import AdminDep
from app.api.deps import container_of
from app.api.json_body import JsonBodyRoute
from app.api.params import ModelName
from app.api.routes.models import ADMIN, BODY, READ, READ_DEPS, move_out
from app.api.schemas.predictions import error_responses
from app.api.schemas.proposals import (
    ApprovalOut,
    DecisionRequest,
    ProposalList,
    ProposalOut,
    ProposalStatus,
)
from app.training.retrain import Proposal

router = APIRouter(
    prefix="/v1/models/{name}/proposals", tags=["proposals"],
    responses=error_responses(400, 404, 409, 422, 503), route_class=JsonBodyRoute,
)


def proposal_out(proposal: Proposal) -> ProposalOut:
    return ProposalOut.model_validate(vars(proposal))


@router.get("", response_model=ProposalList, operation_id="list_proposals",
            dependencies=READ_DEPS, responses=READ)
async def list_proposals(
    name: ModelName, request: Request,
    status: Annotated[ProposalStatus | None, Query(description="Only proposals in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many")] = 100,
) -> ProposalList:
    """Retraining proposals, newest first."""
    found = await container_of(request).proposals.list(name, status=status, limit=limit)
    return ProposalList(name=name, proposals=[proposal_out(p) for p in found])


@router.get("/{proposal_id}", response_model=ProposalOut, operation_id="get_proposal",
            dependencies=READ_DEPS, responses=READ)
async def get_proposal(name: ModelName, proposal_id: uuid.UUID, request: Request) -> ProposalOut:
    """One retraining proposal: the candidate, its data and metrics, the decision."""
    return proposal_out(await container_of(request).proposals.get(name, proposal_id))


@router.post("/{proposal_id}/approve", response_model=ApprovalOut, responses=ADMIN | BODY,
             operation_id="approve_proposal")
async def approve_proposal(
    name: ModelName, proposal_id: uuid.UUID, admin: AdminDep, request: Request,
    body: DecisionRequest | None = None,
) -> ApprovalOut:
    """Promote the candidate through the promotion policy (audited as a promotion). Refused by
    the policy: 409 with its reason, and the proposal stays open. Admin only."""
    proposal, move = await container_of(request).proposals.approve(
        name, proposal_id, actor=admin, reason=body.reason if body else None)
    return ApprovalOut(proposal=proposal_out(proposal), move=move_out(move))


@router.post("/{proposal_id}/reject", response_model=ProposalOut, responses=ADMIN | BODY,
             operation_id="reject_proposal")
async def reject_proposal(
    name: ModelName, proposal_id: uuid.UUID, admin: AdminDep, request: Request,
    body: DecisionRequest | None = None,
) -> ProposalOut:
    """Reject the candidate: nothing is promoted, the challenger alias leaves it; audited
    (``reject-proposal``). Admin only."""
    proposal = await container_of(request).proposals.reject(
        name, proposal_id, actor=admin, reason=body.reason if body else None)
    return proposal_out(proposal)
