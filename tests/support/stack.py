"""Native stand-ins for the compose stack's parts: a private Postgres cluster, an MLflow server,
Prometheus, the service. Each is a context manager that bounds its start-up in time and stops
what it started (by process id or process group, never by name)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy_checks import ROOT, tool
from tests.support.pgcluster import PgCluster
from tests.support.procs import free_port

PG_PORTS = range(55450, 55460)  # the ports this project's private clusters may use
CLI = [sys.executable, "-m", "app.cli"]


def service_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the service's settings, plus ``extra``."""
    drop = ("FS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # mlflow server starts uvicorn from the venv
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"} | extra


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``future-skills <args>``; fails the test with its stderr unless it exits 0."""
    start = time.monotonic()
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"future-skills {' '.join(args)}:\n{result.stderr[-3000:]}"
    print(f"future-skills {args[0]}: {time.monotonic() - start:.1f}s")
    return result


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None,
               interval: float = 0.3):
    """Poll ``check`` until it returns something truthy; fail (with the process' output) on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except (httpx.TransportError, OSError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last error: {last_error!r})")


@contextlib.contextmanager
def private_postgres() -> Iterator[int]:
    """A throw-away Postgres cluster on one of PG_PORTS; yields the port."""
    cluster = PgCluster.create(PG_PORTS)
    try:
        yield cluster.port
    finally:
        cluster.destroy()


@contextlib.contextmanager
def started(
    cmd: list[str], env: dict[str, str], log: Path, *, stop_timeout: float = 60
) -> Iterator[subprocess.Popen]:
    """A process in its own session (its children included), stopped with SIGTERM, then SIGKILL."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # anything of the group still around
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """``mlflow server`` with a database backend store and proxied local artifacts; yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", backend_uri, "--serve-artifacts",
           "--artifacts-destination", str(artifacts),
           "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"]
    url = f"http://127.0.0.1:{port}"
    begin = time.monotonic()
    with started(cmd, env, log) as proc:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 120,
                   f"mlflow server (log {log})", proc)
        print(f"mlflow server ready: {time.monotonic() - begin:.1f}s")
        yield url


@contextlib.contextmanager
def cluster_backends(workdir: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """What every replica of a cluster shares: a private Postgres cluster with the databases
    ``mlflow`` (the tracking server's store) and ``predictions``, and a real ``mlflow server`` on
    it. Yields (Postgres port, MLflow URL, the base environment without service settings)."""
    with private_postgres() as pg_port:
        asyncio.run(_create_databases(pg_port, ("mlflow", "predictions")))
        base_env = service_env()
        with mlflow_server(f"postgresql://postgres@127.0.0.1:{pg_port}/mlflow", workdir / "artifacts",
                           base_env, workdir / "mlflow.log") as mlflow_url:
            yield pg_port, mlflow_url, base_env


async def _create_databases(pg_port: int, names: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres")
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def prometheus_config(target: str, scrape_interval: str = "1s") -> dict:
    """The compose stack's deploy/prometheus/prometheus.yml, aimed at ``target``."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "future-skills"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml lost its future-skills job"
    jobs[0]["scrape_interval"] = scrape_interval
    jobs[0]["static_configs"][0]["targets"] = [target]
    config["scrape_configs"] = jobs
    return config


@contextlib.contextmanager
def prometheus(target: str, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """Debian's Prometheus scraping ``target`` every second; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target)))
    port = free_port()
    cmd = [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with started(cmd, env, workdir / "log") as proc:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60,
                   "prometheus", proc)
        yield url


def prom_query(url: str, expr: str) -> list[dict]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def serving_versions(base: str) -> dict[str, str]:
    """pid -> model version that each live worker of a service reports in fs_model_info."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        s.labels["pid"]: s.labels["model_version"]
        for f in text_string_to_metric_families(text) for s in f.samples
        if s.name == "fs_model_info" and s.value == 1
    }
