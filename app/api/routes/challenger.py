"""The challenger resource: how the version in the shadow compares with Production."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.api.admin_auth import require_client_key
from app.api.deps import container_of
from app.api.params import ModelName, VersionQuery
from app.api.schemas.challenger import ChallengerStateOut, ComparisonOut
from app.api.schemas.monitoring import QueryDuration
from app.api.schemas.predictions import error_responses
from app.config import Duration
from app.errors import ModelNotFound
from app.monitoring.windows import TimeWindow

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(require_client_key)],
    responses=error_responses(401, 403, 404, 422, 503),
)
LastQuery = Annotated[QueryDuration, Query(description="Window: 7d, 30d, 24h, ...")]
THIRTY_DAYS = Duration("30d")


@router.get("/{name}/challenger", operation_id="get_challenger_comparison")
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
    try:
        aliased: str | None = (await asyncio.to_thread(
            container.registry.resolve, name, alias, False)).version
    except ModelNotFound:
        aliased = None
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
