"""Process-level set-up for ``future-skills serve``: TCP_NODELAY on every connection and the
Prometheus multiprocess directory that lets several workers share one ``/metrics``."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _NoDelayMixin:
    """Turn Nagle off on each accepted TCP connection.

    With ``--workers N > 1`` uvicorn hands the listening socket to spawned workers; the asyncio
    loop then sees a socket whose ``proto`` is 0 and skips its own TCP_NODELAY, so every small
    response waits for a delayed ACK (~40 ms; uvicorn issue #3149). uvloop sets it, plain
    asyncio does not; setting it here makes both loops behave the same.
    """

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[misc]


from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402


class NoDelayH11Protocol(_NoDelayMixin, H11Protocol):
    pass


try:  # httptools is optional in uvicorn (it is what "auto" picks when present); h11 always exists
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    NoDelayHttpProtocol: type = NoDelayH11Protocol
else:

    class NoDelayHttpProtocol(_NoDelayMixin, HttpToolsProtocol):  # type: ignore[no-redef]
        pass


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Create (or empty) the directory where worker processes keep their metric files.

    ``PROMETHEUS_MULTIPROC_DIR`` wins when set; else ``<data dir>/prometheus-multiproc``. Files
    left by an earlier run would add its counts to this one, so they are removed; only the
    ``*.db`` files prometheus_client writes, so a mistyped path never loses anything else.
    The variable is exported for the workers, which inherit the environment.
    """
    path = Path(os.environ.get(MULTIPROC_ENV) or data_dir / "prometheus-multiproc")
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def mark_worker_dead() -> None:
    """Drop this worker's live-gauge files when it exits, so ``live*`` gauges forget it."""
    if MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # prometheus_client
