"""415 for a JSON route sent a body that is not JSON; and the client-key check of the /v1
prediction route, made before the body is parsed (as a dependency would) but without one.

FastAPI only parses a body as JSON when the Content-Type says so; any other body reaches the
model as bytes and is answered 422 "Input should be a valid dictionary", which misleads the
client. Routes of this class answer 415 naming the media type they take instead.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.api.admin_auth import check_client_key
from app.errors import UnsupportedMediaType


def is_json(content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


class JsonBodyRoute(APIRoute):
    check_client_key = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # no body parameter: nothing to check
            return handler
        keyed = self.check_client_key

        async def checked(request: Request) -> Response:
            # The body is cached on the request: FastAPI's own parsing reads it from there.
            body = await request.body()
            if body:
                if not is_json(request.headers.get("content-type")):
                    raise UnsupportedMediaType(
                        "the request body must be JSON (Content-Type: application/json)")
                _parse_json_fast(request, body)
            if keyed:
                check_client_key(request)
            return await handler(request)

        return checked


class KeyedJsonRoute(JsonBodyRoute):
    """A JSON route that checks the client key itself (``CLIENT_KEY_SECURITY`` documents it)."""

    check_client_key = True


def _parse_json_fast(request: Request, body: bytes) -> None:
    """Parse the body with orjson (3-4x the standard library on a 100-item request) into the
    cache ``Request.json`` reads, so FastAPI validates it as it would its own parse. A body orjson
    refuses (malformed, NaN, integers beyond 64 bits) is left to FastAPI's ``json.loads``, so the
    errors, and what the standard library accepts, stay exactly as they were."""
    try:
        request._json = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
