"""MLServer 1.7.1 with its MLflow runtime as a peer in bench/serving.py, in a venv of its own.

The venv (default ``var/mlserver-venv``) is created on first use with ``python -m venv`` and
``pip install mlserver==1.7.1 mlserver-mlflow==1.7.1`` plus the versions of scikit-learn, MLflow,
pandas, numpy, scipy, skops and cloudpickle that this venv has, so the registered model loads the
same way in both. It never touches the service's own venv. uvloop is pinned to 0.21.0, the last
release before MLServer 1.7.1's inference workers broke on it: from 0.22 on, ``uvloop``'s
``get_event_loop()`` raises when no loop is set, which is what ``mlserver.parallel.worker`` calls
first, so every worker dies and the model never loads.

The model is the registry's Production version, downloaded once per version into
``<data dir>/mlserver/models/<name>/model``; MLServer runs with ``parallel_workers`` inference
processes (the worker count of the run) behind its single HTTP process, debug logging off, and
adaptive batching on (``max_batch_size`` 64, ``max_batch_time`` 2 ms) unless asked otherwise.
Requests use the V2 inference protocol with one input per column and the ``pd`` content type,
which is what the MLflow runtime decodes into the DataFrame the model's signature describes.

Every failure here is reported as a reason string (``Unavailable``) for the benchmark to print
and skip the peer; nothing in this module ends the benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import orjson

try:
    from bench.procs import Server, free_port
except ImportError:  # python bench/serving.py
    from procs import Server, free_port

VERSION = "1.7.1"
# Installed beside MLServer at the main venv's versions (the ones the model was logged with).
SAME_AS_MAIN = ("scikit-learn", "mlflow", "pandas", "numpy", "scipy", "skops", "cloudpickle")
UVLOOP = "0.21.0"  # see above
EXTRA_PINS = (f"uvloop=={UVLOOP}",)
V2_DATATYPE = {"categorical": "BYTES", "integer": "INT64", "float": "FP64"}


class Unavailable(Exception):
    """MLServer cannot be installed or run here; the message says why."""


def _venv_ok(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mlserver").exists():
        return False
    check = ("import mlserver, mlserver_mlflow, sklearn, uvloop; "
             f"assert mlserver.__version__ == {VERSION!r}, mlserver.__version__; "
             f"assert uvloop.__version__ == {UVLOOP!r}, uvloop.__version__")
    return subprocess.run([str(python), "-c", check], capture_output=True, timeout=120).returncode == 0


def requirements() -> list[str]:
    pins = [f"mlserver=={VERSION}", f"mlserver-mlflow=={VERSION}", *EXTRA_PINS]
    for name in SAME_AS_MAIN:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def ensure_venv(venv: Path, log: Path) -> Path:
    """The venv's ``mlserver`` executable, installing it first if needed (a minute or two)."""
    if _venv_ok(venv):
        return venv / "bin" / "mlserver"
    pins = requirements()
    print(f"mlserver: installing into {venv} (first use): {' '.join(pins)}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            if not (venv / "bin" / "python").exists():
                base = getattr(sys, "_base_executable", None) or "python3"
                subprocess.run([base, "-m", "venv", str(venv)], stdout=out, stderr=subprocess.STDOUT,
                               check=True, timeout=300)
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *pins], stdout=out,
                           stderr=subprocess.STDOUT, check=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"installing MLServer {VERSION} failed ({exc}); see {log}") from exc
    if not _venv_ok(venv):
        raise Unavailable(f"MLServer {VERSION} installed into {venv} but does not import; see {log}")
    return venv / "bin" / "mlserver"


def prepare_model(data_dir: Path, model_name: str, env: dict[str, str]) -> Path:
    """Download the Production version's MLflow model (once per version); returns MLServer's
    model repository root. ``env`` points MLflow at the benchmark's registry."""
    root = data_dir / "mlserver"
    model_dir = root / "models" / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    script = (
        "import shutil, sys, mlflow, mlflow.artifacts\n"
        "name, into, have = sys.argv[1], sys.argv[2], sys.argv[3]\n"
        "v = mlflow.MlflowClient().get_model_version_by_alias(name, 'production').version\n"
        "if v != have:\n"
        "    shutil.rmtree(into, ignore_errors=True)\n"
        "    mlflow.artifacts.download_artifacts(artifact_uri=f'models:/{name}/{v}', dst_path=into)\n"
        "print('VERSION', v)\n"
    )
    version_file = model_dir / "VERSION"
    have = version_file.read_text() if version_file.exists() and (model_dir / "model").exists() else ""
    version_file.unlink(missing_ok=True)  # written back only once the model dir is complete
    out = subprocess.run([sys.executable, "-c", script, model_name, str(model_dir / "model"), have],
                         env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0 or "VERSION " not in out.stdout:
        raise Unavailable(f"downloading the Production model failed: {out.stderr.strip()[-500:]}")
    version_file.write_text(out.stdout.rsplit("VERSION ", 1)[1].strip())
    return root


def server(mlserver: Path, root: Path, model_name: str, workers: int, log_path: Path, env: dict,
           batching: bool = True) -> Server:
    """MLServer on a free port (HTTP; gRPC and metrics on their own free ports)."""
    model_dir = root / "models" / model_name
    settings = {"name": model_name, "implementation": "mlserver_mlflow.MLflowRuntime",
                "parameters": {"uri": "./model", "version": (model_dir / "VERSION").read_text()}}
    if batching:
        settings |= {"max_batch_size": 64, "max_batch_time": 0.002}
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
    port = free_port()
    (root / "settings.json").write_text(json.dumps({
        "debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": workers, "load_models_at_startup": True,
    }, indent=2))
    venv_bin = str(mlserver.parent)
    clean = {k: v for k, v in env.items() if not k.startswith(("MLSERVER", "VIRTUAL_ENV", "PYTHON"))}
    clean["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    label = "mlserver" if batching else "mlserver-nb"
    return Server(label, [str(mlserver), "start", str(root)], clean,
                  f"/v2/models/{model_name}/ready", port, log_path, root)


def infer_path(model_name: str) -> str:
    return f"/v2/models/{model_name}/infer"


def body(rows: list[dict]) -> bytes:
    """A V2 inference request: one input per column, decoded by the runtime as a DataFrame."""
    from app.ml.features import FEATURES

    inputs = []
    for feature in FEATURES:
        column = {"name": feature.name, "datatype": V2_DATATYPE[feature.kind],
                  "shape": [len(rows), 1], "data": [row[feature.name] for row in rows]}
        if feature.is_categorical:
            column["parameters"] = {"content_type": "str"}
        inputs.append(column)
    return orjson.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs})


def labels(response: dict) -> list[str]:
    """The predicted labels of a V2 response (one BYTES output, one label per row)."""
    (output,) = response["outputs"]
    return [v.decode() if isinstance(v, bytes) else v for v in output["data"]]
