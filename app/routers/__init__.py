"""HTTP adapters, one module per resource, collected here."""

from fastapi import APIRouter

from app.routers import health, mlflow_scoring, models, predictions, v2

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predictions.router)
api_router.include_router(mlflow_scoring.router)
api_router.include_router(v2.router)
api_router.include_router(models.router)
