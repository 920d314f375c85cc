"""Error translation for the /invocations and /v2 routes only (the HR API keeps its own shape).

Each protocol gets an ``APIRoute`` subclass that turns domain errors into that protocol's body:
MLflow's ``{"error_code", "message"}`` or V2's ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.errors import Conflict, DomainError, InvalidInput, ModelNotReady, NotFound, RegistryUnavailable
from app.services.protocols.errors import DeadlineExceeded, ProtocolInputError, UnsupportedContentType

log = logging.getLogger(__name__)
RETRY_AFTER = {"Retry-After": "5"}

# MLflow error code -> HTTP status (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS, the codes used here).
MLFLOW_STATUS = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def mlflow_error(code: str, message: str, status: int | None = None) -> JSONResponse:
    status = status or MLFLOW_STATUS[code]
    headers = RETRY_AFTER if status in (429, 503) else None
    return JSONResponse({"error_code": code, "message": message}, status, headers=headers)


def _mlflow_response(exc: Exception) -> Response:
    if isinstance(exc, UnsupportedContentType):
        return mlflow_error("BAD_REQUEST", exc.message, 415)
    if isinstance(exc, ProtocolInputError):
        return mlflow_error(exc.mlflow_code, exc.message)
    if isinstance(exc, InvalidInput):
        return mlflow_error("INVALID_PARAMETER_VALUE", exc.message)
    if isinstance(exc, RequestValidationError):
        return mlflow_error("BAD_REQUEST", "invalid request")
    if isinstance(exc, NotFound):
        return mlflow_error("RESOURCE_DOES_NOT_EXIST", exc.message)
    if isinstance(exc, Conflict):
        return mlflow_error("RESOURCE_CONFLICT", exc.message)
    if isinstance(exc, (ModelNotReady, RegistryUnavailable)):
        return mlflow_error("TEMPORARILY_UNAVAILABLE", exc.message)
    if isinstance(exc, DeadlineExceeded):
        return mlflow_error("DEADLINE_EXCEEDED", exc.message)
    log.error("unhandled error on an MLflow scoring route", exc_info=exc)
    return mlflow_error("INTERNAL_ERROR", "internal server error")


def _v2_status(exc: Exception) -> int:
    if isinstance(exc, (InvalidInput, RequestValidationError)):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, (ModelNotReady, RegistryUnavailable)):
        return 503
    if isinstance(exc, DeadlineExceeded):
        return 504
    return 500


def v2_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=RETRY_AFTER if status == 503 else None)


def _v2_response(exc: Exception) -> Response:
    status = _v2_status(exc)
    if status == 500:
        log.error("unhandled error on a V2 route", exc_info=exc)
        return v2_error("internal server error", 500)
    message = exc.message if isinstance(exc, DomainError) else "invalid request"
    return v2_error(message, status)


def _translating(translate: Callable[[Exception], Response]) -> type[APIRoute]:
    class TranslatingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def translated(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:  # every failure answers in this protocol's shape
                    return translate(exc)

            return translated

    return TranslatingRoute


MlflowRoute = _translating(_mlflow_response)
V2Route = _translating(_v2_response)
