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


def cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and every process it started, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def wait_idle(root: int, below: float = 0.1, window: float = 0.25, timeout: float = 30.0) -> float | None:
    """Wait until the server's process tree uses less than ``below`` of a core over ``window``
    seconds: requests left queued by a load run that just ended are answered before the next run
    starts. Returns the seconds waited, or None if it was still busy after ``timeout``."""
    started = time.perf_counter()
    before = cpu_seconds(root)
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        after = cpu_seconds(root)
        if after - before < below * window:
            return time.perf_counter() - started
        before = after
    return None


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
