"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from app.api.deps import DrainingDep, ReloaderDep, SettingsDep, SlotDep
from app.api.errors import error_body
from app.api.schemas.predictions import Liveness, Readiness, error_responses
from app.serving.model_slot import ModelSlot
from app.serving.reloader import Reloader

router = APIRouter(tags=["health"])


@router.get("/health/live", operation_id="health_live", response_model=Liveness)
async def live() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "alive"}


@router.get(
    "/health/ready",
    operation_id="health_ready",
    response_model=Readiness,
    responses=error_responses(503),
)
async def ready(
    slot: SlotDep, settings: SettingsDep, reloader: ReloaderDep, draining: DrainingDep
) -> JSONResponse:
    """Ready once a model is loaded, by every worker of this server; names the serving version.
    No connection details."""
    model = slot.current
    if draining:
        body = error_body("shutting_down", "the service is shutting down")
        return JSONResponse(body, 503)
    if model is None:
        body = error_body("model_not_ready", "no model is loaded yet")
        return JSONResponse(body, 503, headers={"Retry-After": "5"})
    siblings = slot.siblings
    if siblings.expected > 1:  # a sibling worker still loading would answer 503 meanwhile
        ready_workers = await asyncio.to_thread(siblings.ready_count)
        if ready_workers < siblings.expected:
            body = error_body("model_not_ready",
                              f"{ready_workers} of {siblings.expected} workers have loaded the model")
            return JSONResponse(body, 503, headers={"Retry-After": "5"})
    if slot.suspension is not None and not slot.suspension.confirmed:  # the stop switch is unknown
        return JSONResponse(error_body("model_not_ready", slot.suspension.reason), 503,
                            headers={"Retry-After": "5"})
    return JSONResponse(
        {
            "status": "ready",
            "model": {
                "name": model.name,
                "version": model.version,
                "semver": model.semver,
                "alias": settings.model.alias,
                "resolved_via": model.ref.via,
                "predictor": model.predictor,
            },
            **_registry_state(reloader, model.ref.via),
            **_suspension_state(slot),
        }
    )


def _suspension_state(slot: ModelSlot) -> dict[str, Any]:
    """While the stop switch is on, readiness stays 200 and says so: the load balancer keeps
    routing, so every caller gets the 503 ``suspended`` with its reason rather than the
    balancer's own reasonless 503 (docs/stop-switch-and-erasure.md)."""
    stopped = slot.suspension
    if stopped is None:
        return {}
    return {"suspended": {"reason": stopped.reason, "since": stopped.since.isoformat(),
                          "by": stopped.by}}


def _registry_state(reloader: Reloader, via: str) -> dict[str, Any]:
    """Whether the registry answers; a warning when the model came from the local cache."""
    status = reloader.status
    state: dict[str, Any] = {"registry": {"reachable": status.reachable, "last_error": status.last_error}}
    if via == "cache":
        state["warning"] = (
            "the model registry was unreachable: serving the last known good version from the local cache"
        )
    return state


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format (all workers' series in multiprocess mode)."""
    registry = request.app.state.metrics.registry
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
