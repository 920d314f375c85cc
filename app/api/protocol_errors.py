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
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.admin_auth import check_client_key
from app.api.errors import status_for
from app.errors import DeadlineExceeded, DomainError, InvalidInput
from app.serving.codecs.errors import ProtocolInputError, UnsupportedContentType

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


# HTTP status -> MLflow error code, for domain errors mapped by the shared table in app.api.errors.
MLFLOW_CODE_OF_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    413: "BAD_REQUEST",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _status(exc: Exception) -> int:
    """Both protocols answer bad input with 400 (the HR API's 422 is its own convention)."""
    if isinstance(exc, (InvalidInput, RequestValidationError)):
        return 400
    if isinstance(exc, StarletteHTTPException):  # e.g. the body-size limit's 413 from receive
        return exc.status_code
    if isinstance(exc, DeadlineExceeded):
        return 504
    if isinstance(exc, DomainError):
        status = status_for(exc)
        return 400 if status == 422 else status
    return 500


def _mlflow_response(exc: Exception) -> Response:
    if isinstance(exc, UnsupportedContentType):
        return mlflow_error("BAD_REQUEST", exc.message, 415)
    if isinstance(exc, ProtocolInputError):
        return mlflow_error(exc.mlflow_code, exc.message)
    if isinstance(exc, InvalidInput):
        return mlflow_error("INVALID_PARAMETER_VALUE", exc.message)
    status = _status(exc)
    if status >= 500 and status not in MLFLOW_CODE_OF_STATUS:
        log.error("unhandled error on an MLflow scoring route", exc_info=exc)
        return mlflow_error("INTERNAL_ERROR", "internal server error")
    return mlflow_error(MLFLOW_CODE_OF_STATUS.get(status, "BAD_REQUEST"), _message(exc), status)


def _message(exc: Exception) -> str:
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, StarletteHTTPException) and isinstance(exc.detail, str):
        return exc.detail
    return "invalid request"


def v2_error(message: str, status: int) -> JSONResponse:
    headers = RETRY_AFTER if status in (429, 503) else None
    return JSONResponse({"error": message}, status, headers=headers)


def _v2_response(exc: Exception) -> Response:
    status = _status(exc)
    if status == 500:
        log.error("unhandled error on a V2 route", exc_info=exc)
        return v2_error("internal server error", 500)
    return v2_error(_message(exc), status)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def translating(translate: Callable[[Exception], Response], *, keyed: bool = False
                ) -> Callable[[Handler], Handler]:
    """Wraps a handler so that every failure answers in the protocol's shape; ``keyed`` checks
    the client key first, before parameters are validated, as a dependency would."""
    def wrap(handler: Handler) -> Handler:
        async def translated(request: Request) -> Response:
            try:
                if keyed:
                    check_client_key(request)
                return await handler(request)
            except Exception as exc:  # every failure answers in this protocol's shape
                return translate(exc)

        return translated

    return wrap


def _translating(translate: Callable[[Exception], Response], *, keyed: bool = False) -> type[APIRoute]:
    wrap = translating(translate, keyed=keyed)

    class TranslatingRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            return wrap(super().get_route_handler())

    return TranslatingRoute


MlflowRoute = _translating(_mlflow_response)
V2Route = _translating(_v2_response)
# Prediction routes: the client key is checked by the route, not by a dependency resolved per
# request (``CLIENT_KEY_SECURITY`` documents it). The lean handlers of app.api.hot_routes wrap
# their endpoints the same way.
mlflow_keyed = translating(_mlflow_response, keyed=True)
v2_keyed = translating(_v2_response, keyed=True)
MlflowKeyedRoute = _translating(_mlflow_response, keyed=True)
V2KeyedRoute = _translating(_v2_response, keyed=True)


def documented(schema: dict[str, Any], descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for errors answered as JSON in this protocol's shape."""
    return {
        status: {"description": text, "content": {"application/json": {"schema": schema}}}
        for status, text in descriptions.items()
    }
