"""Model health: healthy / warning / degraded, with every reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.admin_auth import require_client_key
from app.api.deps import HealthDep
from app.api.params import ModelName
from app.api.schemas.monitoring import ModelHealthOut
from app.api.schemas.predictions import error_responses

router = APIRouter(
    prefix="/v1/models", tags=["monitoring"], dependencies=[Depends(require_client_key)],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)


# exclude_unset: each check carries only the figures it judged (see HealthCheckOut).
@router.get("/{name}/health", operation_id="get_model_health", response_model_exclude_unset=True)
async def get_model_health(health: HealthDep, name: ModelName) -> ModelHealthOut:
    """Accuracy below the threshold is degraded; declining accuracy, slow p95 latency, dataset
    drift or an old prediction-log backlog are warnings. The most severe status wins."""
    report = await health.check(name)
    return ModelHealthOut.model_validate(report.to_dict())
