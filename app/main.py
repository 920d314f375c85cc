"""The HTTP app: ``create_app(settings)`` and its lifespan, which serves ``container.build``'s components.

Run with ``uvicorn --factory app.main:create_app_from_env`` or ``future-skills serve``.
"""

from __future__ import annotations

import app.import_order as _import_order  # noqa: F401  # before any other: see its docstring

# isort: split

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.admin_auth import document_client_key
from app.api.errors import install_error_handlers
from app.api.hot_routes import HotRoutes, HotTable
from app.api.http_metrics import HttpMetrics
from app.api.middleware import EdgeMiddleware
from app.api.routes import LEAN_HANDLERS, ROUTERS
from app.api.routes.docs import install_docs
from app.api.server import mark_worker_dead
from app.config import Settings
from app.container import Container, build
from app.db.migrate import pending_revisions
from app.db.session import unavailable_as
from app.errors import DatabaseUnavailable
from app.memory import configure_serving_memory
from app.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class ServiceApp(FastAPI):
    """FastAPI behind the service's own ASGI chain (``chain``: the edge, CORS if configured, the
    prediction routes' lean handlers), which ends in FastAPI's own middleware stack and router
    (``framework``). Lifespan events go straight to FastAPI."""

    chain: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.chain is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
        else:
            await self.chain(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _drain_on_sigterm(container: Container) -> None:
    """Turn readiness to 503 as soon as SIGTERM arrives, then let uvicorn shut down.

    uvicorn (which owns the signal) stops accepting connections and waits for in-flight requests
    (``timeout_graceful_shutdown``); the lifespan's exit then drains the prediction log. With
    ``FS_LIMIT_SHUTDOWN_DELAY_S`` the listener stays open that long first, so a load balancer sees
    the 503 and stops routing before connections are refused. Only a uvicorn server's handler is
    wrapped: in tests or other hosts the process's signals are left alone.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or not isinstance(getattr(previous, "__self__", None), uvicorn.Server):
        return
    forward = previous
    loop = asyncio.get_running_loop()
    delay = container.settings.limits.shutdown_delay_s

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        container.draining = True
        log.info("SIGTERM: draining (readiness now 503)")
        if delay > 0:
            loop.call_soon_threadsafe(lambda: loop.call_later(delay, forward, sig, frame))
        else:
            forward(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


async def _check_schema(container: Container) -> None:
    """Say so loudly when the image is newer than the database (the migration step was skipped);
    the service still starts: predictions are spooled whatever the database holds."""
    try:
        async with unavailable_as():
            pending = await pending_revisions(container.engine)
    except DatabaseUnavailable as exc:
        log.warning("could not read the database schema revision (%s)", type(exc.__cause__).__name__)
        return
    if pending:
        log.error("the database schema lacks %d migration(s) (%s): run `future-skills db upgrade` "
                  "(in Kubernetes, the migration Job) before this version", len(pending),
                  ", ".join(pending))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_serving_memory()
        try:
            async with build(settings, serve=True, metrics=metrics) as container:
                app.state.container = container
                await _check_schema(container)
                _drain_on_sigterm(container)
                yield
        finally:
            mark_worker_dead()  # after the prediction log's last flush, which counts in metrics

    docs = settings.security.docs_enabled
    app = ServiceApp(
        openapi_url="/openapi.json" if docs else None,
        docs_url=None,  # served with local assets by install_docs
        redoc_url=None,
        title="Future Skills model service",
        version="0.1.0",
        summary="Serves the Production future-skills model, logs every prediction, follows the registry.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks look the global providers up on every request (a fifth of
        # the event loop on the prediction route); this service exports Prometheus metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.metrics = metrics
    if docs:
        install_docs(app)
    install_error_handlers(app)
    document_client_key(app, required=bool(settings.security.api_keys))
    for router in ROUTERS:
        app.include_router(router)
    limits = settings.limits
    # The service's own ASGI chain, ahead of FastAPI's: ids, limits, headers and metrics apply to
    # every answer (CORS's too); the prediction routes are answered without FastAPI's stack.
    chain: ASGIApp = app.framework
    if settings.server.hot_routes:
        table = HotTable((route for router in ROUTERS for route in router.routes), LEAN_HANDLERS)
        chain = HotRoutes(chain, table=table, fastapi_app=app)
    if settings.security.cors_origins:
        chain = CORSMiddleware(
            chain,
            allow_origins=settings.security.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.chain = EdgeMiddleware(chain, metrics=HttpMetrics(metrics.registry), max_bytes=limits.max_body_bytes,
                               linger_s=limits.linger_s, linger_max_bytes=limits.linger_max_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment."""
    from app.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
