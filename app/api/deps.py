"""FastAPI dependencies as ``Annotated`` aliases, one per component, so a route's signature says
what it uses (and reads like data).

They are ``async def`` although they only read attributes: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per dependency per request on the hot path. Each reads
the container straight from the app state, so a route pays one call per component it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.explanations.service import ExplanationService
from app.lifecycle.service import LifecycleService
from app.monitoring.drift_service import DriftService
from app.monitoring.groups import GroupService
from app.monitoring.health import HealthService
from app.monitoring.performance import PerformanceService
from app.oversight.record import DecisionRecords
from app.oversight.reviews import ReviewService
from app.prediction_log.feedback import FeedbackService
from app.serving.admission import Admission
from app.serving.core import PredictionService
from app.serving.model_slot import ModelSlot
from app.serving.reloader import Reloader

if TYPE_CHECKING:  # the composition root sits above the API; only its type is needed here
    from app.container import Container


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


async def get_settings(request: Request) -> Settings:
    return container_of(request).settings


async def get_slot(request: Request) -> ModelSlot:
    return container_of(request).slot


async def get_predictions(request: Request) -> PredictionService:
    return container_of(request).predictions


async def get_feedback(request: Request) -> FeedbackService:
    return container_of(request).feedback


async def get_groups(request: Request) -> GroupService:
    return container_of(request).groups


async def get_reviews(request: Request) -> ReviewService:
    return container_of(request).reviews


async def get_explanations(request: Request) -> ExplanationService:
    return container_of(request).explanations


async def get_records(request: Request) -> DecisionRecords:
    return container_of(request).records


async def get_lifecycle(request: Request) -> LifecycleService:
    return container_of(request).lifecycle


async def get_reloader(request: Request) -> Reloader:
    return container_of(request).reloader


async def get_admission(request: Request) -> Admission:
    return container_of(request).admission


async def get_drift(request: Request) -> DriftService:
    return container_of(request).drift


async def get_performance(request: Request) -> PerformanceService:
    return container_of(request).performance


async def get_health(request: Request) -> HealthService:
    return container_of(request).health


async def get_draining(request: Request) -> bool:
    return container_of(request).draining


RequestIdDep = Annotated[str | None, Depends(get_request_id)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SlotDep = Annotated[ModelSlot, Depends(get_slot)]
PredictionsDep = Annotated[PredictionService, Depends(get_predictions)]
FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]
GroupsDep = Annotated[GroupService, Depends(get_groups)]
ReviewsDep = Annotated[ReviewService, Depends(get_reviews)]
ExplanationsDep = Annotated[ExplanationService, Depends(get_explanations)]
RecordsDep = Annotated[DecisionRecords, Depends(get_records)]
LifecycleDep = Annotated[LifecycleService, Depends(get_lifecycle)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
DriftDep = Annotated[DriftService, Depends(get_drift)]
PerformanceDep = Annotated[PerformanceService, Depends(get_performance)]
HealthDep = Annotated[HealthService, Depends(get_health)]
DrainingDep = Annotated[bool, Depends(get_draining)]
