"""The forest compiled to ONNX (skl2onnx) and run by ONNX Runtime, cached beside its version.

Conversion takes seconds and, in-process, leaves the worker ~400 MB larger (skl2onnx builds the
graph as Python protobuf objects), so it runs in a child process (``python -m
app.serving.compiled``) fed the pickled classifier on stdin. The result is written atomically into
the model cache, next to the downloaded version (``<version dir>/compiled/``), under a flock so
that one worker of a host converts while the others wait and then read its file; a restart from
the cache only opens it. A model directory outside the model cache (a training dry run) is not
compiled at all: the conversion would be thrown away. Only the classifier is converted: the
feature transform is ``fast_transform``'s, and its float32 matrix is the session's input.

The cached file is in ONNX Runtime's own format (``.ort``), which the child writes from the ONNX
graph: a session opened from it keeps ~27 MiB for the demo forest where one opened from the
``.onnx`` file keeps ~100 MiB (the ONNX graph's attribute lists stay alive with the session).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.memory import return_freed_memory

log = logging.getLogger(__name__)

# The registry client's marker of a complete cached version (app/registry/client.py).
CACHE_MARKER = "fs-cache.json"
COMPILED_DIR = "compiled"
ML_OPSET = 3
ONNX_OPSET = 17
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the app package


class CompileFailed(Exception):
    """The forest could not be converted or its compiled file not opened."""


def compiled_name() -> str:
    """The compiled file's name: the converter's and the runtime's versions, which made it."""
    return f"forest-skl2onnx{version('skl2onnx')}-ml{ML_OPSET}-ort{version('onnxruntime')}.ort"


def compiled_file(model_dir: Path) -> Path | None:
    """Where the compiled forest of the cached version at ``model_dir`` lives; None when
    ``model_dir`` is not inside the model cache (nothing is written then)."""
    for directory in (model_dir, *list(model_dir.parents)[:2]):
        if (directory / CACHE_MARKER).exists():
            return directory / COMPILED_DIR / compiled_name()
    return None


def convert(classifier: Any, n_features: int, target: Path, timeout_s: float) -> None:
    """Convert ``classifier`` to ``target`` in a child process; atomic (temp file + replace)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "app.serving.compiled", str(tmp), str(n_features)],
            input=pickle.dumps(classifier, protocol=pickle.HIGHEST_PROTOCOL),
            capture_output=True, timeout=timeout_s, cwd=_PACKAGE_ROOT, check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise CompileFailed(f"conversion exited with {done.returncode}: {tail[0]}")
        os.replace(tmp, target)
    except subprocess.TimeoutExpired as exc:
        raise CompileFailed(f"conversion took longer than {timeout_s:g}s") from exc
    finally:
        tmp.unlink(missing_ok=True)


class OnnxForest:
    """An ONNX Runtime session of the converted classifier, one intra-op thread.

    ``InferenceSession.run`` is thread-safe: the batcher's and the request path's worker threads
    share one session. One thread, because a small call on more only contends with the event loop
    (large calls take the trees on every core instead, see ``LeanPredictor``).
    """

    def __init__(self, model: Path | bytes) -> None:
        import onnxruntime as ort  # only a worker that uses the compiled path pays for it

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model) if isinstance(model, Path) else model, options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise CompileFailed(f"the compiled model cannot be opened: {type(exc).__name__}") from exc
        self._input = self._session.get_inputs()[0].name
        # Opening parsed the whole graph and freed most of it again (~150 MB here).
        return_freed_memory()

    def predict_proba(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities in the classifier's ``classes_`` order, each row summing to 1 in float64
        (float32 leaf sums are off by ~1e-7, a row's sum too, and a sure class could exceed 1)."""
        (proba,) = self._session.run(["probabilities"], {self._input: x})
        result = np.asarray(proba, dtype=np.float64)
        result /= result.sum(axis=1, keepdims=True)
        return result


def open_compiled(classifier: Any, n_features: int, target: Path,
                  timeout_s: float) -> tuple[OnnxForest, str]:
    """The compiled forest at ``target`` (see ``compiled_file``) and how it was had ("cached
    ...", "converted in 5.1s ..."): opened, else converted first. A cached file that does not
    open is converted again."""
    target.parent.mkdir(exist_ok=True)
    # Imported here: the conversion's child process runs this module and needs no MLflow.
    from app.registry.client import file_lock

    with file_lock(target.parent / ".lock"):
        if target.exists():
            try:
                return OnnxForest(target), f"cached {target}"
            except CompileFailed as exc:
                log.warning("%s (%s); converting again", exc, target)
        started = time.perf_counter()
        convert(classifier, n_features, target, timeout_s)
        took = time.perf_counter() - started
        for stale in target.parent.glob("forest-*"):  # made by another converter or format
            if stale != target:
                stale.unlink(missing_ok=True)
        for bundle in target.parent.glob("bundle-*"):  # checked with a file that is gone
            bundle.unlink(missing_ok=True)
    return OnnxForest(target), f"converted in {took:.1f}s, cached {target}"


def _convert_main(target: str, n_features: int) -> None:
    """The child: the pickled classifier on stdin -> an ONNX Runtime (``.ort``) file at ``target``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = pickle.load(sys.stdin.buffer)  # our own parent's pickle of its classifier
    # Integer labels: the session's label output is then numbers, not a string per row; the
    # probabilities keep the order of ``classes_``.
    classifier.classes_ = np.arange(len(classifier.classes_))
    onx = convert_sklearn(
        classifier,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    import onnxruntime as ort

    # Saving needs a session of the graph; basic optimisations only, so that the file holds no
    # layout tuned to this machine's CPU (the trees' kernel has none to tune anyway).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = target
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.log_severity_level = 3
    ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    if not Path(target).is_file():
        raise SystemExit("ONNX Runtime wrote no .ort file")


if __name__ == "__main__":
    _convert_main(sys.argv[1], int(sys.argv[2]))
