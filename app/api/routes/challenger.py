"""The challenger resource: how the version in the shadow compares with Production."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.api.admin_auth import AdminDep, require_client_key
from app.api.deps import LifecycleDep, container_of
from app.api.json_body import JsonBodyRoute
from app.api.params import ModelName, VersionQuery
from app.api.schemas.challenger import (
    ChallengerChangeOut,
    ChallengerClearRequest,
    ChallengerRequest,
    ChallengerStateOut,
    ComparisonOut,
)
from app.api.schemas.monitoring import QueryDuration
from app.api.schemas.predictions import error_responses
from app.config import Duration
from app.errors import ModelNotFound
from app.monitoring.windows import TimeWindow

router = APIRouter(
    prefix="/v1/models", tags=["models"], responses=error_responses(404, 422, 503),
    route_class=JsonBodyRoute,
)
READ_DEPS = [Depends(require_client_key)]
ADMIN = {401: {"description": "No admin token"}, 403: {"description": "Wrong admin token"},
         **error_responses(400, 409, 415)}
LastQuery = Annotated[QueryDuration, Query(description="Window: 7d, 30d, 24h, ...")]
THIRTY_DAYS = Duration("30d")


@router.get("/{name}/challenger", operation_id="get_challenger_comparison",
            dependencies=READ_DEPS, responses=error_responses(401, 403))
async def get_challenger(
    name: ModelName, request: Request, last: LastQuery = THIRTY_DAYS,
    version: VersionQuery = None,
) -> ComparisonOut:
    """The challenger (the version the challenger alias names, or ``version``) against Production
    on the rows it shadow-scored: agreement, the champion x challenger confusion of levels, each
    model's accuracy and macro-F1 on rows with feedback and its label-free estimate, latency,
    and the canary predictions it answered."""
    container = container_of(request)
    settings, slot = container.settings, container.slot
    alias = settings.challenger.alias
    aliased = await container.lifecycle.challenger(name)
    target = version or aliased
    if target is None:
        raise ModelNotFound(f"model {name!r} has no challenger: set the registry alias {alias!r} "
                            "or ask for a version")
    report = await container.challenger_comparison.compare(name, target, TimeWindow.last(last))
    loaded = slot.challenger is not None and slot.challenger.version == aliased
    state = ChallengerStateOut(alias=alias, version=aliased, loaded=loaded,
                               shadow=settings.challenger.shadow,
                               canary_percent=settings.challenger.canary_percent)
    return ComparisonOut.model_validate({**report.to_dict(), "state": state})


@router.put("/{name}/challenger", operation_id="set_challenger", responses=ADMIN)
async def set_challenger(
    name: ModelName, body: ChallengerRequest, admin: AdminDep, lifecycle: LifecycleDep
) -> ChallengerChangeOut:
    """Point the challenger alias at a version: every serving worker loads it beside Production
    within one poll interval and shadow-scores with it (and answers the canary share with it).
    Admin only; audited (``challenger``)."""
    previous = await lifecycle.set_challenger(name, body.version, actor=admin, reason=body.reason)
    return ChallengerChangeOut(name=name, alias=lifecycle.challenger_alias, challenger=body.version,
                               previous=previous)


@router.delete("/{name}/challenger", operation_id="clear_challenger", responses=ADMIN)
async def clear_challenger(
    name: ModelName, admin: AdminDep, lifecycle: LifecycleDep,
    body: ChallengerClearRequest | None = None,
) -> ChallengerChangeOut:
    """Remove the challenger alias: shadow scoring and the canary stop within one poll interval.
    Admin only; audited (``challenger-cleared``)."""
    previous = await lifecycle.clear_challenger(name, actor=admin,
                                                reason=body.reason if body else None)
    return ChallengerChangeOut(name=name, alias=lifecycle.challenger_alias, challenger=None,
                               previous=previous)
