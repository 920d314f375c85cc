"""A version's serving bundle: what a worker needs to serve it without scikit-learn.

Written beside the compiled forest (``<version dir>/compiled/``) once the forest and the fast
transform have passed their checks against the pipeline (``LoadedModel``): the fast transform's
parameters, the classifier's classes, and the pipeline's own probabilities on the parity rows
(the first ``PARITY_ROWS`` of the reference sample) and on probe rows of unknown categories. A
worker that finds the bundle rebuilds the transform, opens the ONNX Runtime session and checks
both against those probabilities end to end, then serves without unpickling the pipeline:
scikit-learn and the SciPy it imports (~100 MiB of a worker) stay out of the process until
something needs the pipeline itself (an explanation, a call the compiled forest does not take).

The manifest names the compiled file's and the reference sample's SHA-256, so a bundle is used
only with the exact files it was checked with; anything unreadable or mismatched is ignored and
the version loads the long way (which writes the bundle again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.serving.fast_transform import FastTransform

log = logging.getLogger(__name__)

FORMAT = 1
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Bundle:
    classes: tuple[str, ...]  # the classifier's ``classes_``, the order of every probability here
    transform: FastTransform
    expected: Floats  # the pipeline's probabilities on the parity rows
    # The pipeline's probabilities on the probe rows; None when the pipeline refused them.
    probes: Floats | None


def manifest_file(compiled: Path) -> Path:
    """The bundle of the compiled forest at ``compiled`` (its name carries the runtime versions)."""
    return compiled.with_name(f"bundle-{compiled.stem}.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _floats(values: Any) -> Floats:
    # JSON keeps float64 exactly (Python writes the shortest text that reads back the same value).
    return np.asarray(values, dtype=np.float64)


def write_bundle(compiled: Path, reference: Path, bundle: Bundle) -> Path:
    """Write ``bundle`` for the compiled file and reference sample it was checked with
    (atomically: a temp file replaced over the manifest)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "compiled_sha256": _sha256(compiled),
        "reference_sha256": _sha256(reference),
        "classes": list(bundle.classes),
        "transform": bundle.transform.to_dict(),
        "expected": bundle.expected.tolist(),
        "probes": None if bundle.probes is None else bundle.probes.tolist(),
    }
    target = manifest_file(compiled)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_bundle(compiled: Path, reference: Path) -> Bundle | None:
    """The bundle of ``compiled`` if there is one made with these very files, else None
    (a damaged or mismatched one is logged)."""
    target = manifest_file(compiled)
    if not target.exists() or not compiled.exists() or not reference.exists():
        return None
    try:
        doc = json.loads(target.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        if doc["compiled_sha256"] != _sha256(compiled) or doc["reference_sha256"] != _sha256(reference):
            raise ValueError("made with other files")
        bundle = Bundle(
            classes=tuple(str(c) for c in doc["classes"]),
            transform=FastTransform.from_dict(doc["transform"]),
            expected=_floats(doc["expected"]),
            probes=None if doc["probes"] is None else _floats(doc["probes"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # not our JSON
        log.warning("ignoring the serving bundle %s: %s", target, exc)
        return None
    if bundle.expected.ndim != 2 or bundle.expected.shape[1] != len(bundle.classes):
        log.warning("ignoring the serving bundle %s: its probabilities do not fit its classes", target)
        return None
    return bundle
