"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

from app.routers import drift, health, model_health, performance, predictions

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predictions.router)
api_router.include_router(drift.router)
api_router.include_router(performance.router)
api_router.include_router(model_health.router)
