"""FastAPI dependencies as ``Annotated`` aliases, so route signatures read like data.

They are ``async def`` although they only read attributes: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per dependency per request on the hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.container import Container
from app.lifecycle.service import LifecycleService
from app.prediction_log.feedback import FeedbackService
from app.serving.core import PredictionService
from app.serving.model_slot import ModelSlot
from app.serving.reloader import Reloader


async def get_container(request: Request) -> Container:
    return request.app.state.container


async def get_request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


ContainerDep = Annotated[Container, Depends(get_container)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]


async def get_predictions(container: ContainerDep) -> PredictionService:
    return container.predictions


async def get_models(container: ContainerDep) -> ModelSlot:
    return container.slot


PredictionsDep = Annotated[PredictionService, Depends(get_predictions)]
ModelsDep = Annotated[ModelSlot, Depends(get_models)]


def get_feedback(container: ContainerDep) -> FeedbackService:
    return container.feedback


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]


def get_lifecycle(container: ContainerDep) -> LifecycleService:
    return container.lifecycle


def get_reloader(container: ContainerDep) -> Reloader:
    return container.reloader


LifecycleDep = Annotated[LifecycleService, Depends(get_lifecycle)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
