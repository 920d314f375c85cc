"""The one table from domain errors to HTTP responses, and the app's exception handlers.

Every error body has the shape ``{"error": {"code", "message", "details"?}}`` (PROTOCOLS.md
section 3); the /invocations and /v2 shapes are in ``app.api.protocol_errors``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.errors import (
    Conflict,
    DatabaseUnavailable,
    DeadlineExceeded,
    DomainError,
    InvalidInput,
    ModelNotReady,
    ModelSuspended,
    NotFound,
    Overloaded,
    PermissionDenied,
    PredictionLogFull,
    RegistryUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from app.serving.codecs.hygiene import error_message, field_name

log = logging.getLogger(__name__)


# Most specific class first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 422),
    (UnsupportedMediaType, 415),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (ModelNotReady, 503),
    (ModelSuspended, 503),
    (RegistryUnavailable, 503),
    (Overloaded, 503),
    (DeadlineExceeded, 504),
    (PredictionLogFull, 503),
    (DatabaseUnavailable, 503),
)


def status_for(exc: DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors reduced to location and message; submitted values are never echoed."""
    return [
        {
            "field": ".".join(field_name(part) for part in err.get("loc", ()) if part != "body")
            or "body",
            "type": err.get("type", "invalid"),
            "message": error_message(err),
        }
        for err in errors
    ]


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    status = status_for(exc)
    headers = {"Retry-After": "1" if isinstance(exc, Overloaded) else "5"} if status == 503 else None
    if isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": exc.scheme}
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status, headers=headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return JSONResponse(error_body("invalid_json", "the request body is not valid JSON"), 400)
    details = validation_details(errors)
    fields = sorted({d["field"] for d in details})
    message = "invalid request: " + ", ".join(fields[:10]) + (" ..." if len(fields) > 10 else "")
    return JSONResponse(error_body("validation_error", message, details), 422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(error_body(code, message), exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method of every route on the path: Starlette's 405 names only the first route's,
    and a path served by several routes (GET and PUT of one resource) would hide the others."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error"), 500)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types every handler as taking Exception; each of these takes its own subclass.
    app.add_exception_handler(DomainError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
