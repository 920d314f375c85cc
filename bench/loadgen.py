"""Closed-loop HTTP load on loopback: N keep-alive clients POST one fixed body for a fixed time.

``wrk`` (Debian package ``wrk``) is used when installed: it costs ~0.01 core, so on a 2-core
machine it barely competes with the server it measures. Without it, a minimal asyncio HTTP/1.1
client does the same job (heavier: it adds client CPU and a little latency).
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, e.timeout))
end
"""


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    errors: int  # transport errors, timeouts and non-2xx answers
    p50_ms: float
    p95_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, body: bytes, clients: int, duration_s: float, timeout_s: float = 10.0) -> LoadResult:
    if have_wrk():
        return _run_wrk(url, body, clients, duration_s, timeout_s)
    return asyncio.run(_run_asyncio(url, body, clients, duration_s, timeout_s))


def _run_wrk(url, body, clients, duration_s, timeout_s) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % {"body": body_path})
        threads = min(clients, 2)  # wrk takes whole seconds
        cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, math.ceil(duration_s))}s",
               "--timeout", f"{timeout_s:g}s", "-s", str(script), url]
        out = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             timeout=duration_s + timeout_s + 30)
    match = re.search(r"^RESULT (.*)$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    n, dur_us, transport, status, p50, p95, p99, _max, _timeouts = map(int, match.group(1).split())
    # wrk counts a non-2xx answer as a completed request too: take those out of the throughput.
    return LoadResult(n - status, dur_us / 1e6, transport + status, p50 / 1000, p95 / 1000,
                      p99 / 1000, "wrk")


async def _run_asyncio(url, body, clients, duration_s, timeout_s) -> LoadResult:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = match.group(1), int(match.group(2)), match.group(3)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration_s

    async def client() -> None:
        nonlocal errors
        reader = writer = None
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), timeout_s)
                if 200 <= status < 300:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([0.0])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LoadResult(len(latencies), elapsed, errors, p50, p95, p99, "asyncio")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")),
        None,
    )
    if length is None:
        raise ValueError("responses without Content-Length are not supported")
    await reader.readexactly(length)
    return status
