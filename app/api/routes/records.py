"""The decision record: one document with everything about one prediction."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from app.api.admin_auth import require_client_key
from app.api.deps import RecordsDep
from app.api.schemas.predictions import error_responses
from app.api.schemas.records import DecisionRecordOut

router = APIRouter(
    prefix="/v1/predictions", tags=["predictions"], dependencies=[Depends(require_client_key)]
)


@router.get(
    "/{prediction_id}/record",
    response_model=DecisionRecordOut,
    operation_id="get_decision_record",
    responses=error_responses(401, 403, 404, 503),
)
async def get_decision_record(prediction_id: uuid.UUID, records: RecordsDep) -> DecisionRecordOut:
    """Everything about one decision: input, output, model name, version, semver and run id, the
    explanation, reviews and the final level, feedback, request id and timestamps (the
    per-inference traceability of docs/accountability.md)."""
    return DecisionRecordOut.model_validate(await records.record(prediction_id))
