"""Requests per second at one kept-alive client against uvicorn with 2 workers on the plain
asyncio loop: uvicorn's own HTTP protocol vs. the service's (which sets TCP_NODELAY).

    python -m bench.multiworker_nodelay [--requests 200]

A tiny ASGI app (headers and body sent as two messages, as Starlette does) isolates the server.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import httpx

from bench.procs import free_port as _free_port


def measure(protocol: str, requests: int) -> float:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench._plain_server", str(port), protocol],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with httpx.Client() as client:
            client.get(url)
            start = time.perf_counter()
            for _ in range(requests):
                client.get(url)
            return requests / (time.perf_counter() - start)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    for protocol in ("httptools", "nodelay"):
        rate = measure(protocol, args.requests)
        print(f"2 workers, asyncio loop, {protocol:9s}: {rate:7.1f} req/s at 1 client")


if __name__ == "__main__":
    main()
