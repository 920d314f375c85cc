"""Server processes for the benchmark: start, wait until ready (timing the cold start), RSS, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_by_process(root: int) -> list[tuple[int, float, str]]:
    """(pid, RSS MiB, command) for the server and every process it started."""
    out = []
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:70]
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        out.append((pid, kb / 1024, cmd.strip()))
    return out


class Server:
    def __init__(self, label: str, cmd: list[str], env: dict, ready_path: str, port: int,
                 log_path: Path, cwd: Path) -> None:
        self.cwd = cwd
        self.label, self.cmd, self.env, self.ready_path, self.port = label, cmd, env, ready_path, port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.cold_start_s = float("nan")

    def start(self, timeout: float = 180) -> Server:
        log = self.log_path.open("w")
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited; see {self.log_path}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    self.cold_start_s = time.perf_counter() - started
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.label} not ready after {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
