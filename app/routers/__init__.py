"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

from app.routers import health, predictions
from app.routers import drift, model_health, performance  # monitoring (issue 5)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predictions.router)
api_router.include_router(drift.router)
api_router.include_router(performance.router)
api_router.include_router(model_health.router)
