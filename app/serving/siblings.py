"""Readiness of a server with several worker processes, as one.

uvicorn's workers share one listening socket and the kernel hands each connection to any of them,
so a worker that answered ``/health/ready`` for itself alone would let a load balancer send
traffic while its siblings are still loading their model, and those answer 503. So each worker
leaves a marker file once it serves a model (``<data dir>/workers/<pid>.ready``, holding the
server process's pid), and is ready only when as many live workers of the same server have done
so as the server started. Markers of dead workers, or of an earlier server, count for nothing and
are removed by the next worker that marks itself. Blocking (a few small files): run in a thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Set by ``future-skills serve`` (app.cli.main) for its workers: how many it started.
WORKER_COUNT_ENV = "FS_SERVE_WORKER_COUNT"
_SUFFIX = ".ready"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class SiblingWorkers:
    def __init__(self, directory: Path, expected: int) -> None:
        self.directory = directory
        self.expected = expected  # 1: a lone worker, nothing to wait for

    @classmethod
    def from_environment(cls, directory: Path) -> SiblingWorkers:
        try:
            expected = max(1, int(os.environ.get(WORKER_COUNT_ENV, "1")))
        except ValueError:
            expected = 1
        return cls(directory, expected)

    @property
    def _own(self) -> Path:
        return self.directory / f"{os.getpid()}{_SUFFIX}"

    def mark_ready(self) -> None:
        """Say this worker serves a model (idempotent)."""
        if self.expected <= 1:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._markers(prune=True)
            tmp = self._own.with_suffix(".tmp")
            tmp.write_text(str(os.getppid()))
            tmp.replace(self._own)
        except OSError as exc:  # readiness then stays 503, and this says why
            log.error("cannot mark this worker ready in %s: %s", self.directory, exc)

    def forget(self) -> None:
        """This worker stops (its sibling may be restarted in its place)."""
        if self.expected > 1:
            self._own.unlink(missing_ok=True)

    def ready_count(self) -> int:
        return len(self._markers(prune=False))

    def all_ready(self) -> bool:
        return self.expected <= 1 or self.ready_count() >= self.expected

    def _markers(self, *, prune: bool) -> list[Path]:
        """Markers of live workers of this server; with ``prune`` the others are deleted."""
        server = str(os.getppid())
        live = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                pid, parent = int(path.name.removesuffix(_SUFFIX)), path.read_text().strip()
            except (OSError, ValueError):
                continue
            alive = _alive(pid)
            if alive and parent == server:
                live.append(path)
            elif prune and not alive:
                path.unlink(missing_ok=True)
        return live
