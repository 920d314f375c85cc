"""A scale-out topology started natively: replicas of the service (each with its own data
directory, as each pod has its own volume), Debian's HAProxy in front with the repository's
``deploy/haproxy/haproxy.cfg``, and a load generator that records every call it makes."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.deploy_checks import ROOT, tool
from tests.support.factories import valid_items
from tests.support.procs import free_port
from tests.support.stack import CLI, started, wait_until

HAPROXY_CFG = ROOT / "deploy/haproxy/haproxy.cfg"


class Replica:
    """One replica: ``future-skills serve`` (one worker) on its own port and data directory.

    It can be stopped (SIGTERM, like a rolling restart), killed (SIGKILL) and started again on
    the same directory, as a pod comes back on its volume."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.data_dir = data_dir
        self.env = env | {"FS_DATA_DIR": str(data_dir)}
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port), "--workers", "1"], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until(lambda: httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200,
                   timeout, f"{self.name} ready (log {self.log})", self.proc)

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(60)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def spooled_lines(self) -> int:
        """Records in this replica's spool segments (not yet drained, or not yet deleted)."""
        return sum(len(p.read_bytes().splitlines())
                   for p in (self.data_dir / "spool").glob("predictions-*.jsonl"))


@dataclass
class Balancer:
    url: str
    stats: str

    def server_states(self) -> dict[str, str]:
        """HAProxy's view of each replica: UP, DOWN, ``UP 1/2`` while rising..."""
        text = httpx.get(f"{self.stats}/stats;csv", timeout=5).text.lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_state(self, server: str, state: str, timeout: float = 60) -> None:
        wait_until(lambda: self.server_states().get(server) == state, timeout,
                   f"HAProxy sees {server} {state}", interval=0.1)


@contextlib.contextmanager
def haproxy(replicas: list[Replica], workdir: Path, env: dict[str, str]) -> Iterator[Balancer]:
    """HAProxy with the repository's config, its servers aimed at ``replicas``."""
    assert len(replicas) == 2, "deploy/haproxy/haproxy.cfg names two servers"
    port, stats_port = free_port(), free_port()
    lb_env = env | {"FS_LB_BIND": f"127.0.0.1:{port}", "FS_LB_STATS_BIND": f"127.0.0.1:{stats_port}"}
    lb_env |= {f"FS_REPLICA_{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(replicas)}
    balancer = Balancer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}")
    with started([tool("haproxy"), "-W", "-db", "-f", str(HAPROXY_CFG)], lb_env,
                 workdir / "haproxy.log") as proc:
        wait_until(lambda: httpx.get(f"{balancer.stats}/stats;csv", timeout=2).status_code == 200,
                   30, "haproxy", proc)
        for i in range(len(replicas)):
            balancer.wait_state(f"replica-{i}", "UP")
        yield balancer


@dataclass(frozen=True)
class Call:
    kind: str  # "predict", "get", "feedback"
    start: float
    end: float
    status: int | None  # None: no HTTP answer at all
    replica: str | None  # HAProxy's X-Served-By
    version: str | None = None  # the model version of a prediction
    ids: tuple[str, ...] = ()  # the prediction ids a prediction answered

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """Client threads, each on its own keep-alive connection to the balancer, running chains of
    predict, then at once GET and feedback of the prediction just made (so the balancer sends them
    to any replica). Stops after ``chains`` chains in all, or when ``stop`` is called."""

    base: str
    threads: int = 4
    chains: int | None = None
    calls: list[Call] = field(default_factory=list)
    chains_done: list[tuple[Call, Call, Call]] = field(default_factory=list)  # predict, get, feedback
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: int = 0

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float = 120) -> None:
        for worker in self._workers:
            worker.join(timeout)
            assert not worker.is_alive(), "a load thread hung"

    def _claim(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self.chains is not None and self._started >= self.chains):
                return False
            self._started += 1
            return True

    def _run(self, thread: int) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            n = 0
            while self._claim():
                n += 1
                self._chain(client, valid_items(1 + n % 2, seed=thread * 100_000 + n), n)

    def _call(
        self, client: httpx.Client, kind: str, method: str, path: str, body: dict | None
    ) -> tuple[Call, dict]:
        start = time.monotonic()
        try:
            response = client.request(method, path, json=body)
        except httpx.TransportError:
            return self._add(Call(kind, start, time.monotonic(), None, None)), {}
        end = time.monotonic()
        is_json = response.headers.get("content-type", "").startswith("application/json")
        payload = response.json() if is_json else {}
        version, ids = None, ()
        if kind == "predict" and response.status_code == 200:
            version = payload["model"]["version"]
            ids = tuple(p["prediction_id"] for p in payload["predictions"])
        call = Call(kind, start, end, response.status_code, response.headers.get("x-served-by"),
                    version, ids)
        return self._add(call), payload

    def _add(self, call: Call) -> Call:
        with self._lock:
            self.calls.append(call)
        return call

    def _chain(self, client: httpx.Client, items: list[dict], n: int) -> None:
        predicted, _ = self._call(client, "predict", "POST", "/v1/predictions", {"items": items})
        if not predicted.ok:
            return
        first = predicted.ids[0]
        read, _ = self._call(client, "get", "GET", f"/v1/predictions/{first}", None)
        level = ("LOW", "MEDIUM", "HIGH")[n % 3]
        fed, _ = self._call(client, "feedback", "POST", f"/v1/predictions/{first}/feedback",
                            {"actual_level": level})
        with self._lock:
            self.chains_done.append((predicted, read, fed))

    # --- what happened ---------------------------------------------------------------------------
    def of(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def failed(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if not c.ok]

    def answered_ids(self) -> set[str]:
        return {i for c in self.of("predict") for i in c.ids}

    def feedback_given(self) -> int:
        return sum(1 for c in self.of("feedback") if c.ok)

    def summary(self) -> str:
        with self._lock:
            calls = list(self.calls)
        statuses: dict[object, int] = {}
        for c in calls:
            statuses[(c.kind, c.status)] = statuses.get((c.kind, c.status), 0) + 1
        return ", ".join(f"{k}:{s}={n}" for (k, s), n in sorted(statuses.items(), key=str))
