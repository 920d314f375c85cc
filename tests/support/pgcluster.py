"""A private, throwaway PostgreSQL cluster that tests may stop, restart and kill.

The shared server at 127.0.0.1:5432 must never be stopped, so failure tests run their own cluster
(FIELD-NOTES.md, "Postgres on these machines"). The server binaries refuse to run as root, so every
command runs as the ``postgres`` user in a directory it owns. Ports 55440-55449 are reserved for
this purpose on the shared machine.

Usage::

    cluster = PgCluster.create(port_range=range(55440, 55450))
    url = await cluster.create_database()      # fresh database, migrated
    cluster.stop()                             # fast shutdown (connections are refused)
    cluster.start()                            # same port, data kept
    cluster.kill()                             # SIGKILL of the postmaster (crash), then start()
    cluster.destroy()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

PORTS = range(55440, 55450)


def _bindir() -> Path:
    return Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                               check=True).stdout.strip())


def _as_postgres(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, capture_output=True, text=True, timeout=timeout, check=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PgCluster:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.bin = _bindir()

    @classmethod
    def create(cls, ports: range = PORTS) -> PgCluster:
        """initdb a new cluster in a fresh directory and start it on the first free port."""
        root = Path(tempfile.mkdtemp(prefix="fs-pgcluster-"))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        for port in ports:
            if _port_free(port):
                break
        else:
            raise RuntimeError(f"no free port in {ports}")
        cluster = cls(root, port)
        _as_postgres([str(cluster.bin / "initdb"), "-D", str(cluster.data), "-A", "trust",
                      "-U", "postgres", "--no-sync", "-E", "UTF8"], timeout=120)
        cluster.start()
        return cluster

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=60")
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts,
                      "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"], timeout=90)

    def stop(self, mode: str = "fast") -> None:
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its children exit on their own."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def running(self) -> bool:
        result = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)
        return result.returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            try:
                self.start()
            except subprocess.CalledProcessError:
                # A killed postmaster may leave a stale pid file; pg_ctl copes once children are gone.
                time.sleep(1)
                self.start()

    async def create_database(self, migrate: bool = True) -> str:
        name = f"fs_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = self.url(name)
        if migrate:
            from app.db.migrate import upgrade

            await upgrade(url)
        return url

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- pytest fixtures (imported by tests/conftest.py) ---------------------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    """One private cluster for the session; tests may stop or kill it (it is restarted after)."""
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def cluster_db(pg_cluster):
    """A fresh migrated database on the private cluster; the cluster is running again afterwards."""
    pg_cluster.ensure_running()
    url = await pg_cluster.create_database()
    yield url
    pg_cluster.ensure_running()
