"""Open Inference Protocol V2 REST (KServe / Triton clients), PROTOCOLS.md section 2."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from app.api.admin_auth import CLIENT_KEY_SECURITY
from app.api.deps import SlotDep, container_of
from app.api.hot_routes import Fallback
from app.api.params import ModelName, VersionPath
from app.api.protocol_errors import V2KeyedRoute, V2Route, documented, v2_error, v2_keyed
from app.serving.codecs import v2
from app.serving.codecs.errors import ProtocolInputError
from app.serving.codecs.schemas import V2_ERROR_SCHEMA, infer_request_body, infer_response_schema
from app.serving.loaded_model import LoadedModel
from app.serving.model_slot import ModelSlot

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route)
BINARY_HEADER = "inference-header-content-length"
ERRORS = documented(V2_ERROR_SCHEMA, {
    400: "Bad input, a path parameter included",
    404: "Unknown model or a version that is not loaded",
    503: "No model is loaded yet (see Retry-After)",
})
INFER_ERRORS = documented(V2_ERROR_SCHEMA, {
    401: "API key missing (when FS_API_KEYS is set)",
    403: "API key not valid",
    413: "Request body too large",
    504: "The request took longer than FS_LIMIT_DEADLINE_S",
})
BINARY_BODY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/health/live", operation_id="v2_live")
async def live() -> dict[str, Any]:
    """200 while the process answers."""
    return {"live": True}


@router.get("/health/ready", operation_id="v2_ready", responses={503: ERRORS[503]})
async def ready(slot: SlotDep) -> JSONResponse:
    """200 once a model is loaded and usable, by every worker of this server, else 503."""
    if not await slot.serving_everywhere():  # this worker, or another of the server, is loading
        return v2_error("the model is not loaded yet", 503)
    return JSONResponse({"ready": True})


@router.get("", operation_id="v2_server_metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    """Server name, version and the protocol extensions supported (none)."""
    return v2.server_metadata(request.app.title, request.app.version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    header = request.headers.get(BINARY_HEADER)
    if header is not None and not (header.isascii() and header.isdigit()):
        raise ProtocolInputError("Inference-Header-Content-Length must be a byte count")
    json_length = int(header) if header else None

    def select(slot: ModelSlot) -> LoadedModel:
        return v2.find_model(slot, name, version)

    async def decode(model: LoadedModel) -> v2.InferRequest:
        body = await request.body()
        return await asyncio.to_thread(v2.parse_infer, body, model.signature, json_length)

    parsed, outcome = await container_of(request).predictions.serve(
        decode, select=select, request_id=request.scope["state"]["request_id"], protocol="v2"
    )
    body, binary_length = v2.encode_infer_response(parsed, outcome)
    if binary_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body, media_type="application/octet-stream", headers={BINARY_HEADER: str(binary_length)}
    )


METADATA = "Model metadata: input tensors from the MLflow signature; outputs"
READY = "200 when this model (version) is loaded"
INFER = "Predict: the label and the class probabilities (LOW, MEDIUM, HIGH) per row"
INFER_BODY: dict[str, Any] = {"requestBody": infer_request_body(), **CLIENT_KEY_SECURITY}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs; with binary outputs requested, the binary tensor data "
        "extension's body (JSON, then the tensors; Inference-Header-Content-Length)",
        "content": {"application/json": {"schema": infer_response_schema()},
                    "application/octet-stream": BINARY_BODY},
    },
    **ERRORS, **INFER_ERRORS,
}


@router.get("/models/{name}", operation_id="v2_model_metadata", summary=METADATA,
            responses=ERRORS)
async def model_metadata(name: ModelName, slot: SlotDep) -> dict[str, Any]:
    return v2.model_metadata(v2.find_model(slot, name, None))


@router.get("/models/{name}/versions/{version}", operation_id="v2_model_version_metadata",
            summary=METADATA, responses=ERRORS)
async def model_version_metadata(name: ModelName, version: VersionPath, slot: SlotDep) -> dict[str, Any]:
    return v2.model_metadata(v2.find_model(slot, name, version))


@router.get("/models/{name}/ready", operation_id="v2_model_ready", summary=READY, responses=ERRORS)
async def model_ready(name: ModelName, slot: SlotDep) -> dict[str, Any]:
    return {"name": v2.find_model(slot, name, None).name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", operation_id="v2_model_version_ready",
            summary=READY, responses=ERRORS)
async def model_version_ready(name: ModelName, version: VersionPath, slot: SlotDep) -> dict[str, Any]:
    return {"name": v2.find_model(slot, name, version).name, "ready": True}


async def infer(name: ModelName, request: Request) -> Response:
    return await _infer(request, name, None)


async def version_infer(name: ModelName, version: VersionPath, request: Request) -> Response:
    return await _infer(request, name, version)


_NAME = TypeAdapter(ModelName)
_VERSION = TypeAdapter(VersionPath)


async def _infer_checked(request: Request) -> Response:
    params = request.path_params  # checked by infer_lean
    return await _infer(request, params["name"], params.get("version"))


_infer_keyed = v2_keyed(_infer_checked)


async def infer_lean(request: Request) -> Response:
    """Both infer routes for app.api.hot_routes: a path parameter the route would refuse falls
    back to it (its 400); the rest is the route's key check, translation and ``_infer``."""
    params = request.path_params
    try:
        _NAME.validate_python(params["name"])
        if "version" in params:
            _VERSION.validate_python(params["version"])
    except ValidationError:
        raise Fallback from None
    return await _infer_keyed(request)


# The client key is checked by the route class (V2KeyedRoute): no dependency per request.
for path, endpoint, operation_id in (
    ("/models/{name}/infer", infer, "v2_infer"),
    ("/models/{name}/versions/{version}/infer", version_infer, "v2_version_infer"),
):
    router.add_api_route(path, endpoint, methods=["POST"], operation_id=operation_id, summary=INFER,
                         openapi_extra=INFER_BODY, responses=INFER_RESPONSES,
                         route_class_override=V2KeyedRoute)
