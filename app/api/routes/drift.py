"""Drift reports over a window of logged predictions: JSON, and the same as a page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from app.api.admin_auth import require_client_key
from app.api.deps import DriftDep
from app.api.schemas.monitoring import DriftReportOut, QueryDuration
from app.api.schemas.predictions import IsoDatetime, error_responses, json_error_responses

router = APIRouter(
    prefix="/v1/drift", tags=["monitoring"], dependencies=[Depends(require_client_key)]
)
ERRORS = (401, 403, 404, 409, 422, 503)

Start = Annotated[IsoDatetime | None, Query(description="Window start (ISO 8601; naive means UTC)")]
End = Annotated[IsoDatetime | None, Query(description="Window end (default: now)")]
Last = Annotated[
    QueryDuration | None, Query(description="Instead of start/end: the last 30m, 24h, 7d, ...")
]
_HTML: dict[int | str, dict[str, Any]] = {200: {
    "description": "A self-contained page (the native engine's has no scripts or external resources)",
    "content": {"text/html": {"schema": {"type": "string"}}},
}}


@router.get("", operation_id="get_drift", responses=error_responses(*ERRORS))
async def get_drift(
    drift: DriftDep, start: Start = None, end: End = None, last: Last = None,
    engine: Literal["native", "evidently"] = "native",
) -> DriftReportOut:
    """Per-feature drift (score, method, threshold, drifted) and the dataset verdict; stored in
    ``drift_report``. With ``engine=evidently`` a failure of Evidently is answered by the native
    engine, and ``engine``/``fallback_reason`` say so."""
    result, _ = await drift.report(drift.window(start, end, last), engine)
    return DriftReportOut.model_validate(result.to_dict())


@router.get(
    "/report.html",
    response_class=HTMLResponse,
    operation_id="get_drift_report_html",
    responses=_HTML | json_error_responses(*ERRORS),
)
async def get_drift_html(
    drift: DriftDep, start: Start = None, end: End = None, last: Last = None,
    engine: Literal["native", "evidently"] = "evidently",
) -> HTMLResponse:
    """The report as a self-contained page: Evidently's by default, or the native engine's."""
    return HTMLResponse(await drift.page(drift.window(start, end, last), engine))
