"""Replacing a labelled gauge's series (the served version, per-feature drift) in one process and
in prometheus_client's multi-process mode, where clear() and remove() only warn."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest

from app.metrics import ServiceMetrics

# Multi-process mode is chosen when prometheus_client is imported: run it in a fresh interpreter.
_MULTIPROCESS_SCRIPT = """
import json, warnings
warnings.simplefilter("error", UserWarning)  # the old clear() warned on every call
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from app.metrics import ServiceMetrics

m = ServiceMetrics()
m.set_serving("fs", "1", "1.0.0")
m.set_serving("fs", "2", None)
m.drift_scores.replace({("a",): 0.5, ("b",): 0.1})
m.drift_scores.replace({("a",): 0.7})
registry = CollectorRegistry()
MultiProcessCollector(registry)
print(json.dumps({s.name: sorted([sorted(x.labels.items()), x.value] for x in f.samples)
                  for f in registry.collect() for s in f.samples[:1]}))
"""


def test_multiprocess_series_are_blanked_without_a_warning(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _MULTIPROCESS_SCRIPT], env=env, check=True,
                         capture_output=True, text=True)
    assert "UserWarning" not in out.stderr, out.stderr
    series = json.loads(out.stdout)
    info = {tuple(v for k, v in labels if k != "pid"): value for labels, value in series["fs_model_info"]}
    assert info == {("fs", "1", "1.0.0"): 0, ("fs", "2", ""): 1}  # the old version reads 0, as before
    scores = {dict(labels)["feature"]: value for labels, value in series["fs_drift_score"]}
    assert scores["a"] == 0.7 and math.isnan(scores["b"])


def test_single_process_series_of_a_replaced_set_are_removed() -> None:
    m = ServiceMetrics()
    m.set_serving("fs", "1", "1.0.0")
    m.set_serving("fs", "2", None)
    m.drift_scores.replace({("a",): 0.5, ("b",): 0.1})
    m.drift_scores.replace({("a",): 0.7})
    text = generate_latest(m.registry).decode()
    assert 'fs_model_info{model_name="fs",model_version="2",semver=""} 1.0' in text
    assert 'model_version="1"' not in text
    assert 'fs_drift_score{feature="a"} 0.7' in text and 'feature="b"' not in text
