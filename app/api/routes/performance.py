"""Model performance from feedback, per time bucket, with the trend."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from app.api.admin_auth import require_client_key
from app.api.deps import GroupsDep, PerformanceDep, SlotDep
from app.api.params import VersionQuery
from app.api.schemas.groups import GroupsOut
from app.api.schemas.monitoring import PerformanceOut, QueryDuration
from app.api.schemas.predictions import error_responses
from app.config import Duration
from app.config.monitoring import GROUP_DIMENSIONS
from app.monitoring.windows import TimeWindow

router = APIRouter(
    prefix="/v1/performance", tags=["monitoring"], dependencies=[Depends(require_client_key)],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)

LastQuery = Annotated[QueryDuration, Query(description="Window: 7d, 30d, 24h, ...")]
BucketQuery = Annotated[QueryDuration, Query(description="Bucket size: 1d, 6h, 1w, ...")]
THIRTY_DAYS, ONE_DAY = Duration("30d"), Duration("1d")
GroupByQuery = Annotated[
    Literal[GROUP_DIMENSIONS],  # type: ignore[valid-type]  # the settings' tuple, one source
    Query(description="The feature to group by"),
]


# exclude_unset: the trend has no first/last accuracy without a line, and the body says so by
# leaving them out, as it always has.
@router.get("", operation_id="get_performance", response_model_exclude_unset=True)
async def get_performance(
    performance: PerformanceDep, slot: SlotDep, last: LastQuery = THIRTY_DAYS,
    bucket: BucketQuery = ONE_DAY, version: VersionQuery = None,
) -> PerformanceOut:
    """Accuracy, macro-F1 and per-class recall per bucket from feedback (latest feedback per
    prediction wins), the overall figures, and the trend (improving / declining / stable)."""
    model = slot.require()
    report = await performance.compute(
        TimeWindow.last(last), bucket.timedelta, model.name, version)
    return PerformanceOut.model_validate(report.to_dict())


@router.get("/groups", operation_id="get_performance_groups")
async def get_performance_groups(
    groups: GroupsDep, slot: SlotDep, by: GroupByQuery, last: LastQuery = THIRTY_DAYS,
    version: VersionQuery = None,
) -> GroupsOut:
    """Per group (department, skill category or job role): predictions, the share of each
    predicted level, realized accuracy from feedback, the label-free estimate, and the ratio of
    the group's HIGH rate to the overall rate."""
    model = slot.require()
    report = await groups.compute(TimeWindow.last(last), by, model.name, version)
    return GroupsOut.model_validate(report.to_dict())
