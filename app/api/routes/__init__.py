"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

from app.api.hot_routes import LeanHandler
from app.api.routes import (
    challenger,
    drift,
    explanations,
    health,
    mlflow_scoring,
    model_health,
    models,
    performance,
    predictions,
    proposals,
    records,
    reviews,
    v2,
)

# Included into the app one by one, in this order (it is the OpenAPI document's): FastAPI matches
# an included router's routes through one more layer per level of nesting, on every request.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    predictions.router,
    explanations.router,
    records.router,
    mlflow_scoring.router,
    v2.router,
    models.router,
    proposals.router,
    challenger.router,
    drift.router,
    performance.router,
    model_health.router,
    reviews.router,
)

# The prediction routes' lean handlers, by operation id (app.api.hot_routes).
LEAN_HANDLERS: dict[str, LeanHandler] = {
    "create_predictions": predictions.create_predictions_lean,
    "mlflow_invocations": mlflow_scoring.invocations_lean,
    "v2_infer": v2.infer_lean,
    "v2_version_infer": v2.infer_lean,
}
