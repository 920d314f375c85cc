"""ASGI middleware: request ids, body-size limit, security headers."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_body
from app.logs import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# Stored in prediction.request_id (String(100)) and written in every log line of the request.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,100}")


class RequestIdMiddleware:
    """Accept a well-formed ``X-Request-ID`` or generate one; expose it to logs and handlers.

    An id that is not 1-100 characters of ``[A-Za-z0-9._:-]`` (too long for the column, or with
    characters that would break a log line) is replaced, not refused: the id is a tracing aid,
    the request itself is fine, and the answer's ``X-Request-ID`` names the id used.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()), None
        )
        request_id = supplied if supplied and _SAFE_ID.fullmatch(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(
                    (REQUEST_ID_HEADER.encode(), request_id.encode())
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """413 for bodies over the limit, counted as the body streams in (Content-Length is not trusted),
    and a lingering close for any answer given before the body was read.

    Starlette's own ``RequestBodyLimitMiddleware`` answers a declared oversize body in plain text,
    outside our error shape; this one answers JSON. The streamed case raises an ``HTTPException``
    from ``receive``, which FastAPI re-raises from body parsing to the error handler table.

    Lingering close (nginx's ``lingering_close``): a server that answers and closes while the
    client is still sending resets the connection, and ``http.client``, ``requests``, ``httpx``
    or curl see a broken pipe instead of the 413. So the answer's last message is held back
    while the rest of the body is read and discarded, for at most ``linger_s`` and
    ``linger_max_bytes``; then the response ends and the server closes a drained connection.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, linger_s: float = 10.0, linger_max_bytes: int = 64 << 20
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.linger_max_bytes = linger_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = b""
        chunked = expects_continue = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"expect":
                expects_continue = value.lower() == b"100-continue"
        if not chunked and declared in (b"", b"0"):  # no body: nothing to count or drain
            await self.app(scope, receive, send)
            return
        message = f"the request body exceeds {self.max_bytes} bytes"
        body = _BodyState()
        if declared.isdigit() and int(declared) > self.max_bytes:
            payload = json.dumps(_too_large(scope["path"], message)).encode()
            await send({
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")],
            })
            # A client waiting for "100 Continue" sends no body after a final answer; reading
            # would make the server send the 100 and invite the whole body.
            if not expects_continue:
                await send({"type": "http.response.body", "body": payload, "more_body": True})
                await self._discard_rest(receive, body)
                payload = b""
            await send({"type": "http.response.body", "body": payload})
            return

        async def counting_receive() -> Message:
            msg = await receive()
            body.saw(msg)
            if body.received > self.max_bytes:
                raise HTTPException(413, message)
            return msg

        async def lingering_send(msg: Message) -> None:
            if msg["type"] == "http.response.body" and not msg.get("more_body") and not body.done:
                await send({**msg, "more_body": True})
                await self._discard_rest(receive, body)
                msg = {"type": "http.response.body", "body": b""}
            await send(msg)

        await self.app(scope, counting_receive, lingering_send)

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


# JSON answers carry a locked-down policy; HTML pages (docs, reports) keep their own needs.
_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_JSON_ONLY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {k.lower() for k, _ in headers}
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                extra = _COMMON_HEADERS + (
                    _JSON_ONLY_HEADERS if content_type.startswith(b"application/json") else []
                )
                headers.extend((k, v) for k, v in extra if k not in present)
            await send(message)

        await self.app(scope, receive, send_with_headers)
