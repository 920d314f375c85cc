"""The one ASGI middleware every request passes: request id, body-size limit with a lingering
close, security headers and the HTTP metrics, in a single layer.

Four separate layers (each wrapping ``send`` and re-reading the headers) cost the event loop more
than the framework itself on a single-row prediction; one pass over the request headers and one
``send`` wrapper do the same work.

- Request id: a well-formed ``X-Request-ID`` (1-100 characters of ``[A-Za-z0-9._:-]``) is kept,
  anything else is replaced by a generated one (a tracing aid, not a reason to refuse); it is in
  ``scope["state"]``, in every log line of the request, and in the answer's ``X-Request-ID``.
- Body limit: 413 for bodies over the limit, counted as the body streams in (Content-Length is
  not trusted), in the error shape of the path's protocol. Starlette's own limit answers plain
  text. Lingering close (nginx's ``lingering_close``): a server that answers and closes while the
  client is still sending resets the connection, and ``http.client``, ``requests``, ``httpx`` or
  curl see a broken pipe instead of the answer; so the answer's last message is held back while
  the rest of the body is read and discarded, for at most ``linger_s`` / ``linger_max_bytes``.
- Security headers on every answer; JSON answers also get a locked-down CSP and ``no-store``
  (HTML pages, docs and reports, keep their own needs).
- HTTP metrics (``app.api.http_metrics``), labelled by the route template Starlette matched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_body
from app.api.http_metrics import UNMATCHED, HttpMetrics
from app.logs import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = REQUEST_ID_HEADER.encode()
# Stored in prediction.request_id (String(100)) and written in every log line of the request.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,100}")

_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_JSON_ONLY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
_SECURITY_NAMES = frozenset(k for k, _ in _COMMON_HEADERS + _JSON_ONLY_HEADERS)


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: HttpMetrics, max_bytes: int, linger_s: float = 10.0,
        linger_max_bytes: int = 64 << 20,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.linger_max_bytes = linger_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = declared = b""
        chunked = expects_continue = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == _REQUEST_ID:
                supplied = value
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"expect":
                expects_continue = value.lower() == b"100-continue"
        text_id = supplied.decode("latin-1")
        request_id = text_id if text_id and _SAFE_ID.fullmatch(text_id) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        id_header = (_REQUEST_ID, request_id.encode())
        body = _BodyState()
        has_body = chunked or declared not in (b"", b"0")
        answer = _Answer()

        async def edge_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.started(message)
                headers = message.setdefault("headers", [])
                _add_headers(headers, answer.content_type)
                headers.append(id_header)
            elif has_body and not message.get("more_body") and not body.done:
                # The answer is ready before the whole body came: linger, then end it.
                await send({**message, "more_body": True})
                await self._discard_rest(receive, body)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        async def counting_receive() -> Message:
            msg = await receive()
            body.saw(msg)
            if body.received > self.max_bytes:
                raise HTTPException(413, f"the request body exceeds {self.max_bytes} bytes")
            return msg

        try:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._too_large(scope, receive, edge_send, body, expects_continue)
            else:
                await self.app(scope, counting_receive if has_body else receive, edge_send)
        finally:
            request_id_var.reset(token)
            route = scope.get("route")
            self.metrics.observe(
                scope["method"], answer.status, getattr(route, "path", UNMATCHED),
                time.perf_counter() - started,
                int(declared) if declared.isdigit() else 0, answer.length,
            )

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, body: _BodyState, expects_continue: bool
    ) -> None:
        payload = json.dumps(_too_large(scope["path"], f"the request body exceeds {self.max_bytes} bytes"))
        data = payload.encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(data)).encode()),
                        (b"connection", b"close")],
        })
        # A client waiting for "100 Continue" sends no body after a final answer; reading
        # would make the server send the 100 and invite the whole body.
        if not expects_continue:
            await send({"type": "http.response.body", "body": data, "more_body": True})
            await self._discard_rest(receive, body)
            data = b""
        body.done = True  # nothing more is read: the body message below ends the answer
        await send({"type": "http.response.body", "body": data})

    async def _discard_rest(self, receive: Receive, body: _BodyState) -> None:
        discarded = 0
        try:
            async with asyncio.timeout(self.linger_s):
                while not body.done and discarded <= self.linger_max_bytes:
                    msg = await receive()
                    body.saw(msg)
                    discarded += len(msg.get("body", b""))
        except TimeoutError:
            log.info("lingering close: the client still sent after %.1f s; closing", self.linger_s)
        if not body.done:  # the server resets the connection: the client may miss the answer
            log.info("lingering close gave up after discarding %d bytes", discarded)
            body.done = True


def _new_request_id() -> str:
    """What ``uuid.uuid4().hex`` gives, without building a UUID object (a few per cent of a
    single-row request's event-loop time)."""
    return f"{int.from_bytes(os.urandom(16)) & _V4_CLEAR | _V4_SET:032x}"


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def _add_headers(headers: list[tuple[bytes, bytes]], content_type: bytes) -> None:
    present = {k.lower() for k, _ in headers if k.lower() in _SECURITY_NAMES}
    extra = _COMMON_HEADERS + (_JSON_ONLY_HEADERS if content_type.startswith(b"application/json") else [])
    headers.extend((k, v) for k, v in extra if k not in present)


class _Answer:
    """What the response said about itself: status, content type and length (for metrics)."""

    __slots__ = ("content_type", "length", "status")

    def __init__(self) -> None:
        self.status = 500  # nothing sent: the app raised, the server answers 500
        self.content_type = b""
        self.length = 0

    def started(self, message: Message) -> None:
        self.status = message["status"]
        for key, value in message.get("headers", ()):
            if key == b"content-type":
                self.content_type = value
            elif key == b"content-length" and value.isdigit():
                self.length = int(value)


def _too_large(path: str, message: str) -> dict[str, Any]:
    """The 413 in the error shape of the protocol the path belongs to (routing has not run yet)."""
    if path == "/invocations":
        return {"error_code": "BAD_REQUEST", "message": message}
    if path.startswith("/v2/"):
        return {"error": message}
    return error_body("payload_too_large", message)


class _BodyState:
    """How much of the request body has arrived, and whether all of it has."""

    __slots__ = ("done", "received")

    def __init__(self) -> None:
        self.received = 0
        self.done = False

    def saw(self, msg: Message) -> None:
        if msg["type"] == "http.request":
            self.received += len(msg.get("body", b""))
            self.done = not msg.get("more_body", False)
        else:  # http.disconnect: nothing more will come
            self.done = True
