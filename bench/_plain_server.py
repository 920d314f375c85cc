"""A two-worker uvicorn on the plain asyncio loop with a tiny ASGI app (for multiworker_nodelay)."""

from __future__ import annotations

import sys

import uvicorn

from app.api.server import NoDelayHttpProtocol


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    # Headers and body as two messages, as Starlette sends them.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"alive"}'})


if __name__ == "__main__":
    http = NoDelayHttpProtocol if sys.argv[2] == "nodelay" else "httptools"
    uvicorn.run("bench._plain_server:app", port=int(sys.argv[1]), workers=2, loop="asyncio",
                http=http, log_level="warning")
