"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

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

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predictions.router)
api_router.include_router(explanations.router)
api_router.include_router(records.router)
api_router.include_router(mlflow_scoring.router)
api_router.include_router(v2.router)
api_router.include_router(models.router)
api_router.include_router(proposals.router)
api_router.include_router(challenger.router)
api_router.include_router(drift.router)
api_router.include_router(performance.router)
api_router.include_router(model_health.router)
api_router.include_router(reviews.router)
