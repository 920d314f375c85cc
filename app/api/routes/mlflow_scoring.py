"""MLflow's scoring protocol: a drop-in for ``mlflow models serve`` (PROTOCOLS.md section 1)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from mlflow.version import VERSION as MLFLOW_VERSION

from app.api.admin_auth import CLIENT_KEY_SECURITY
from app.api.deps import SlotDep, container_of
from app.api.protocol_errors import (
    MlflowKeyedRoute,
    MlflowRoute,
    documented,
    mlflow_error,
    mlflow_keyed,
)
from app.serving.codecs.mlflow_scoring import ParsedInvocation, parse_invocation
from app.serving.codecs.schemas import (
    MLFLOW_ERROR_SCHEMA,
    invocations_request_body,
    invocations_response_schema,
)
from app.serving.loaded_model import LoadedModel

router = APIRouter(tags=["mlflow scoring protocol"], route_class=MlflowRoute)
NOT_READY = documented(MLFLOW_ERROR_SCHEMA, {503: "No model is loaded yet"})
PLAIN = "text/plain"
# MLflow's bodies byte for byte ("\n", a bare version): clients only look at the status. MLflow
# labels them application/json, which they are not; they are labelled (and documented) as text.
PING_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "A model is loaded", "content": {PLAIN: {"schema": {"type": "string"}}}}
}


async def _ping(slot: SlotDep) -> Response:
    if slot.current is None:
        return mlflow_error("TEMPORARILY_UNAVAILABLE", "no model is loaded yet")
    return Response("\n", 200, media_type=PLAIN)


router.add_api_route(
    "/ping", _ping, methods=["GET"], operation_id="mlflow_ping", responses=PING_OK | NOT_READY,
    response_class=Response, summary="200 once a model is loaded (MLflow scoring server health check)",
)
router.add_api_route(
    "/health", _ping, methods=["GET"], operation_id="mlflow_health", responses=PING_OK | NOT_READY,
    response_class=Response, summary="Same as /ping",
)


@router.get(
    "/version",
    operation_id="mlflow_version",
    response_class=Response,
    responses={200: {"description": "The MLflow version, e.g. 3.17.2",
                     "content": {PLAIN: {"schema": {"type": "string"}}}}},
)
async def version() -> Response:
    """The MLflow version, as MLflow's scoring server answers it (bare, not a JSON string)."""
    return Response(MLFLOW_VERSION, 200, media_type=PLAIN)


async def invocations(request: Request) -> Response:
    """Score a table in any of MLflow's formats; answers ``{"predictions": [level, ...]}``."""
    content_type = request.headers.get("content-type")

    async def decode(model: LoadedModel) -> ParsedInvocation:
        body = await request.body()
        return await asyncio.to_thread(parse_invocation, body, content_type, model.signature)

    _, outcome = await container_of(request).predictions.serve(
        decode, request_id=request.scope["state"]["request_id"], protocol="mlflow"
    )
    return Response(orjson.dumps({"predictions": [r.level for r in outcome.results]}),
                    media_type="application/json")


# The lean handler (app.api.hot_routes): the route's key check and error translation, no router.
invocations_lean = mlflow_keyed(invocations)

# The client key is checked by the route class (MlflowKeyedRoute): no dependency per request.
router.add_api_route(
    "/invocations",
    invocations,
    methods=["POST"],
    operation_id="mlflow_invocations",
    openapi_extra={"requestBody": invocations_request_body(), **CLIENT_KEY_SECURITY},
    responses={
        200: {"content": {"application/json": {"schema": invocations_response_schema()}}},
        **documented(MLFLOW_ERROR_SCHEMA, {
            400: "Input the model signature or the feature schema refuses",
            401: "API key missing (when FS_API_KEYS is set)",
            403: "API key not valid",
            413: "Request body too large",
            415: "Missing or unsupported Content-Type or charset",
            503: "No model is loaded yet (see Retry-After)",
            504: "The request took longer than FS_LIMIT_DEADLINE_S",
        }),
    },
    route_class_override=MlflowKeyedRoute,
)
