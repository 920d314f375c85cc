"""The prediction routes answered ahead of FastAPI's middleware stack and router.

A single-row prediction through FastAPI passes a dozen nested layers (server-error, telemetry,
body-limit and exception middlewares, exit stacks, included routers matched twice, the
request-response wrapper and its exception wrapper, dependency solving) before the endpoint runs,
and every ``await`` on the way (the model thread, the spool's fsync) resumes through all of them:
on the /v1 route they cost the event loop about as much as everything the service does for the
request (1,100-1,300 against 1,800-2,100 single-row requests/s at 64 connections, one worker).
This layer, the last of the service's own ASGI chain (``app.main.ServiceApp``), matches the
prediction routes itself and calls their lean handlers with a Starlette ``Request``; every other
request, and every request a lean handler declines (``Fallback``), goes to FastAPI, its body
replayed.

The routes stay FastAPI routes: the OpenAPI document, the validation errors and the answers to
anything unusual come from them. A lean handler only answers what it answers exactly as its route
would (``app.api.routes`` defines each next to its route), and declines before it has predicted or
counted anything; whatever it raises is answered by the app's exception handlers, found as
Starlette's exception middlewares find them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LeanHandler = Callable[[Request], Awaitable[Response]]


class Fallback(Exception):
    """Raised by a lean handler that leaves the request to its FastAPI route."""


@dataclass(frozen=True)
class _HotRoute:
    route: APIRoute
    handler: LeanHandler
    regex: re.Pattern[str] | None  # None: the path has no parameters (matched by a dict lookup)


class HotTable:
    """The POST routes among ``routes`` whose operation ids ``handlers`` names, with their lean
    handlers. Made when the app is created, so that a handler naming no route fails there."""

    def __init__(self, routes: Iterable[Any], handlers: dict[str, LeanHandler]) -> None:
        found = [
            _HotRoute(r, handlers[r.operation_id], r.path_regex if r.param_convertors else None)
            for r in routes
            if isinstance(r, APIRoute) and r.operation_id in handlers and "POST" in (r.methods or ())
        ]
        missing = set(handlers) - {h.route.operation_id for h in found}
        if missing:
            raise ValueError(f"no POST route with operation id(s) {sorted(missing)}")
        self.exact = {h.route.path: h for h in found if h.regex is None}
        self.patterns = [h for h in found if h.regex is not None]


class HotRoutes:
    """ASGI middleware: POST requests to the routes of ``table`` are answered by their lean
    handlers; everything else passes to ``app``."""

    def __init__(self, app: ASGIApp, *, table: HotTable, fastapi_app: Any) -> None:
        self.app = app
        self._fastapi_app = fastapi_app  # scope["app"] for the lean handlers, as Starlette sets it
        self._exact = table.exact
        self._patterns = table.patterns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        hot = self._exact.get(path)
        params: dict[str, str] = {}
        if hot is None:
            for candidate in self._patterns:
                if (match := candidate.regex.fullmatch(path)) is not None:  # type: ignore[union-attr]
                    hot, params = candidate, match.groupdict()
                    break
            else:
                await self.app(scope, receive, send)
                return
        scope["app"] = self._fastapi_app
        scope["route"] = hot.route  # the HTTP metrics label by the route template
        scope["endpoint"] = hot.route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await hot.handler(request)
        except Fallback:
            await self.app(scope, _replaying(request, receive), send)
            return
        except Exception as exc:
            response = await _handled(request, exc)
        await response(scope, receive, send)


async def _handled(request: Request, exc: Exception) -> Response:
    """The app's handler for ``exc``, found as Starlette's exception middlewares find it (the
    catch-all for Exception, which logs, included: no server-error middleware is outside)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            response: Response = await handlers[cls](request, exc)
            return response
    raise exc


def _replaying(request: Request, receive: Receive) -> Receive:
    """``receive`` for the FastAPI route after a lean handler declined: the body the handler read
    comes first, as one message; then the connection's own messages (a disconnect)."""
    body: bytes | None = getattr(request, "_body", None)
    if body is None:  # the handler read nothing: the route reads the connection itself
        return receive
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
