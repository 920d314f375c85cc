"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

from app.routers import health, models, predictions

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predictions.router)
api_router.include_router(models.router)
