"""The model lifecycle resource: versions, audit, and admin-only promote / rollback / reload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.api.admin_auth import AdminDep, require_client_key
from app.api.deps import LifecycleDep, ReloaderDep, SettingsDep, SlotDep, container_of
from app.api.json_body import JsonBodyRoute
from app.api.params import ModelName
from app.api.schemas.models import (
    ModelOut,
    MoveOut,
    PromoteRequest,
    PromotionList,
    PromotionOut,
    ReloadOut,
    RollbackRequest,
    ServingOut,
    VersionList,
    VersionOut,
)
from app.api.schemas.predictions import Responses, error_responses
from app.api.schemas.suspension import ResumeRequest, SuspendRequest, SuspensionOut, SwitchOut
from app.errors import ModelNotFound
from app.lifecycle.service import MoveResult
from app.lifecycle.suspension import SwitchResult

router = APIRouter(
    prefix="/v1/models", tags=["models"], responses=error_responses(400, 404, 409, 422, 503),
    route_class=JsonBodyRoute,
)
ADMIN: Responses = {401: {"description": "No admin token"}, 403: {"description": "Wrong admin token"}}
BODY = error_responses(415)
# Reads need the client key (when FS_API_KEYS is set); moves need an admin token instead.
READ_DEPS = [Depends(require_client_key)]
READ = error_responses(401, 403)


def move_out(result: MoveResult) -> MoveOut:
    """The move and what this worker serves after it: the lifecycle service already served the
    new Production here (other workers follow within one poll interval)."""
    reload = ReloadOut(**vars(result.reload)) if result.reload is not None else None
    return MoveOut(
        name=result.model_name, action=result.action, from_version=result.from_version,
        to_version=result.to_version,
        decision=result.decision.as_dict() if result.decision else None, reload=reload,
    )


@router.get("/{name}", response_model=ModelOut, operation_id="get_model",
            dependencies=READ_DEPS, responses=READ)
async def get_model(name: ModelName, lifecycle: LifecycleDep, slot: SlotDep) -> ModelOut:
    """The registered model, its Production version and what this worker serves."""
    summary = await lifecycle.summary(name)
    model = slot.current
    serving = None
    if model is not None and model.name == name:
        serving = ServingOut(version=model.version, semver=model.semver, resolved_via=model.ref.via)
    stopped = slot.suspension if name == slot.settings.name else None
    suspended = SuspensionOut(reason=stopped.reason, since=stopped.since, by=stopped.by) if stopped else None
    return ModelOut(**summary, serving=serving, suspended=suspended)


@router.get("/{name}/versions", response_model=VersionList, operation_id="list_model_versions",
            dependencies=READ_DEPS, responses=READ)
async def list_versions(name: ModelName, lifecycle: LifecycleDep) -> VersionList:
    """Every version, newest first: semver, metrics, aliases, legacy stage, run id, creation time."""
    versions = await lifecycle.versions(name)
    return VersionList(name=name, versions=[VersionOut(**v) for v in versions])


@router.get("/{name}/promotions", response_model=PromotionList, operation_id="list_promotions",
            dependencies=READ_DEPS, responses=READ)
async def list_promotions(
    name: ModelName, lifecycle: LifecycleDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> PromotionList:
    """The promotion audit, newest first."""
    rows = await lifecycle.audit.list(name, limit)
    return PromotionList(name=name, promotions=[PromotionOut(**row) for row in rows])


@router.post("/{name}/promote", response_model=MoveOut, responses=ADMIN | BODY,
             operation_id="promote_model")
async def promote(
    name: ModelName, body: PromoteRequest, admin: AdminDep, lifecycle: LifecycleDep
) -> MoveOut:
    """Make a version Production if the promotion policy agrees (``force`` skips it). Admin only."""
    result = await lifecycle.promote(name, body.version, actor=admin, reason=body.reason,
                                     force=body.force)
    return move_out(result)


@router.post("/{name}/rollback", response_model=MoveOut, responses=ADMIN | BODY,
             operation_id="rollback_model")
async def rollback(
    name: ModelName, admin: AdminDep, lifecycle: LifecycleDep, body: RollbackRequest | None = None
) -> MoveOut:
    """Undo the last move: Production goes back to the version before it (repeatable). Admin only."""
    result = await lifecycle.rollback(name, actor=admin, reason=body.reason if body else None)
    return move_out(result)


@router.post("/{name}/reload", response_model=ReloadOut, responses=ADMIN, operation_id="reload_model")
async def reload(
    name: ModelName, admin: AdminDep, settings: SettingsDep, reloader: ReloaderDep
) -> ReloadOut:
    """Look at the registry now (also retries a version that failed recently). Admin only."""
    if name != settings.model.name:
        raise ModelNotFound(f"this service only serves {settings.model.name!r}")
    return ReloadOut(**vars(await reloader.poll_once(retry_failed=True)))


def _switched(result: SwitchResult) -> SwitchOut:
    state = result.state
    return SwitchOut(name=state.model_name, suspended=state.suspended, reason=state.reason,
                     changed_by=state.changed_by, changed_at=state.changed_at, changed=result.changed)


@router.post("/{name}/suspend", response_model=SwitchOut, responses=ADMIN | BODY,
             operation_id="suspend_model")
async def suspend(name: ModelName, body: SuspendRequest, admin: AdminDep, request: Request) -> SwitchOut:
    """The stop switch: every worker of every replica answers predictions on every protocol with
    503 ``suspended`` and the reason, this worker at once, the others within one poll interval;
    it survives restarts. Suspending a suspended model changes nothing (``changed: false``).
    Admin only; audited (``suspend``)."""
    result = await container_of(request).stop_switch.suspend(name, actor=admin, reason=body.reason)
    return _switched(result)


@router.post("/{name}/resume", response_model=SwitchOut, responses=ADMIN | BODY,
             operation_id="resume_model")
async def resume(
    name: ModelName, admin: AdminDep, request: Request, body: ResumeRequest | None = None
) -> SwitchOut:
    """Undo the stop switch: predictions are served again (same propagation as suspend).
    Resuming a model that is not suspended changes nothing. Admin only; audited (``resume``)."""
    stop_switch = container_of(request).stop_switch
    result = await stop_switch.resume(name, actor=admin, reason=body.reason if body else None)
    return _switched(result)
