"""A model version loaded for serving: the scikit-learn pipeline plus what describes it.

Three prediction paths, the fastest that reproduces the pipeline on the version's reference sample
in use (``predictor``; docs/predictors.md): "onnx" (``fast_transform`` + the forest compiled for
ONNX Runtime, large calls by the forest's own trees on every core), "lean" (``lean_predict``) and
"pipeline".

A version whose compiled forest has passed its checks gets a serving bundle in the model cache
(``app.serving.bundle``); loaded again from the cache it serves from the bundle alone, and the
pipeline (with scikit-learn) is read only when something needs it (``fitted``).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow.sklearn
import numpy as np
import numpy.typing as npt
import pandas as pd
from mlflow.models import Model
from mlflow.models.signature import ModelSignature

from app.config import ModelSettings
from app.memory import return_freed_memory
from app.ml.calibration import CALIBRATION_FILE, HOLDOUT_FILE, Calibration
from app.ml.features import CATEGORICAL, FEATURE_NAMES, LEVELS, SCORE_WEIGHTS
from app.registry.client import VersionRef
from app.serving.bundle import Bundle, manifest_file, read_bundle, write_bundle
from app.serving.compiled import CompileFailed, OnnxForest, compiled_file, compiled_name, open_compiled
from app.serving.fast_transform import FastTransform, Unsupported

if TYPE_CHECKING:  # imported with scikit-learn, when a path needs the pipeline's trees
    from app.serving.lean_predict import LeanPredictor

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.parquet"
PARITY_ROWS = 5000  # of the reference sample, for every path's check
UNKNOWN_PROBE = "\x00unseen category"
Predictor = Literal["onnx", "lean", "pipeline"]


@dataclass(frozen=True)
class PredictorOptions:
    """How a version picks its prediction path (the ``FS_MODEL_*`` settings of the same names)."""

    predictor: Predictor = "onnx"
    parity_tolerance: float = 1e-5
    large_batch_rows: int = 1024
    large_batch_threads: int = 0
    compile_timeout_s: float = 300.0

    @classmethod
    def of(cls, settings: ModelSettings) -> PredictorOptions:
        return cls(
            predictor=settings.predictor, parity_tolerance=settings.parity_tolerance,
            large_batch_rows=settings.large_batch_rows, large_batch_threads=settings.large_batch_threads,
            compile_timeout_s=settings.compile_timeout_s,
        )


@dataclass
class LoadedModel:
    ref: VersionRef
    # The fitted sklearn Pipeline (sklearn ships no types); None until ``fitted`` reads it when
    # the version was loaded from its serving bundle.
    pipeline: Any
    signature: ModelSignature | None
    reference: pd.DataFrame | None
    loaded_at: float = field(default_factory=time.time)
    # The pandas-free path (see lean_predict); None when the pipeline's shape is not supported,
    # and, from a serving bundle, until a call needs the trees.
    lean: LeanPredictor | None = field(default=None, repr=False)
    # The compiled forest, with the fast transform; set only after the parity check.
    onnx: OnnxForest | None = field(default=None, repr=False)
    # The checked fast transform (the onnx path's, and the lean path's when it has one).
    fast: FastTransform | None = field(default=None, repr=False)
    # How the path in use was chosen (logged at load), e.g. the parity figures.
    predictor_note: str = ""
    # A compiled forest still to be built (its options and file): see ``compile_pending``.
    pending_compile: tuple[PredictorOptions, Path] | None = field(default=None, repr=False)
    # Per-class probability maps fitted at training on held-out rows, for performance
    # estimation; None for a version trained before calibration existed.
    calibration: Calibration | None = field(default=None, repr=False)
    # Held-out rows (features and label) the calibration was judged on; None before it existed.
    holdout: pd.DataFrame | None = field(default=None, repr=False)
    # The downloaded version directory (``fitted`` reads the pipeline from it).
    model_dir: Path | None = field(default=None, repr=False)
    # The reference sample's file (a serving bundle names its hash).
    reference_file: Path | None = field(default=None, repr=False)
    options: PredictorOptions = field(default_factory=PredictorOptions, repr=False)
    # The classifier's classes as text (``classes``), known without the pipeline from a bundle.
    class_names: tuple[str, ...] = field(default=(), repr=False)
    _reading: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def predictor(self) -> Predictor:
        """The prediction path in use: "onnx", "lean" or "pipeline"."""
        if self.onnx is not None:
            return "onnx"
        return "pipeline" if self.lean is None else "lean"

    @property
    def from_bundle(self) -> bool:
        """Serving from the version's bundle, the pipeline not read (yet)."""
        return self.pipeline is None

    def fitted(self) -> Any:
        """The fitted pipeline; read from the model directory on first need when the version was
        loaded from its serving bundle (blocking: about a second and ~100 MiB, scikit-learn's
        import and the trees)."""
        if self.pipeline is None:
            with self._reading:
                if self.pipeline is None:
                    if self.model_dir is None:
                        raise RuntimeError(f"version {self.version} has no pipeline to read")
                    self.pipeline = read_pipeline(self.model_dir)
                    log.info("version %s: pipeline read for a path the bundle does not serve",
                             self.version)
        return self.pipeline

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def semver(self) -> str | None:
        return self.ref.semver

    def predict_proba(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Class probabilities in LEVELS order, whatever order the classifier learned them in; by
        the compiled path when it is in use (a frame of any size: large ones use every core)."""
        fast = self.fast
        if fast is None or (self.onnx is None and self.lean is None):
            return self._in_level_order(self.fitted().predict_proba(frame))
        return self._in_level_order(self._forest(fast.transform_frame(frame)))

    def predict_rows(self, rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
        """Class probabilities in LEVELS order for validated rows, by the path in use."""
        fast, lean = self.fast, self.lean
        if fast is not None and (self.onnx is not None or lean is not None):
            return self._in_level_order(self._forest(fast.transform_rows(rows)))
        if lean is None:
            return self._in_level_order(self.fitted().predict_proba(to_frame(rows)))
        return self._in_level_order(lean.forest_proba(lean.transform(rows)))

    def _forest(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        # ONNX Runtime on one thread for up to large_rows rows (where it is fastest); larger calls,
        # and values the float32 graph might treat otherwise (NaN), go to the trees themselves.
        onnx = self.onnx
        if onnx is not None and len(x) <= self.options.large_batch_rows and np.isfinite(x).all():
            return onnx.predict_proba(x)
        return self._trees().forest_proba(x)

    def _trees(self) -> LeanPredictor:
        """The lean path; from a serving bundle, built on the first call that needs the trees."""
        if self.lean is None:
            pipeline = self.fitted()
            with self._reading:
                if self.lean is None:
                    from app.serving.lean_predict import LeanPredictor

                    lean = LeanPredictor(pipeline, large_rows=self.options.large_batch_rows,
                                         threads=self.options.large_batch_threads)
                    if self.fast is not None:
                        lean.use_fast_transform(self.fast)
                    self.lean = lean
        return self.lean

    def levels_of(self, proba: npt.NDArray[np.float64]) -> list[str]:
        """Predicted level per row, ties broken as the pipeline's ``predict`` (pyfunc) breaks them."""
        classes, columns = self._class_columns
        return [classes[i] for i in proba[:, columns].argmax(axis=1).tolist()]

    @property
    def classes(self) -> tuple[str, ...]:
        """The classifier's ``classes_`` as text (the order of its own probabilities)."""
        if not self.class_names:
            self.class_names = tuple(str(c) for c in self.fitted().classes_)
        return self.class_names

    @functools.cached_property
    def _class_columns(self) -> tuple[list[str], list[int]]:
        """``classes_`` as text, and the LEVELS-order columns that give ``classes_`` order."""
        classes = list(self.classes)
        return classes, [LEVELS.index(c) for c in classes]

    def _in_level_order(self, proba: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        order = self._level_order
        return proba if order is None else proba[:, order]

    @functools.cached_property
    def _level_order(self) -> npt.NDArray[np.intp] | None:
        """Columns of ``classes_`` order that give LEVELS order (None: the same order)."""
        classes = list(self.classes)
        if classes == list(LEVELS):
            return None
        return np.array([classes.index(level) for level in LEVELS], dtype=np.intp)

    def serve_bundle(self, options: PredictorOptions) -> bool:
        """Serve from the version's serving bundle if it has one made with its files and the
        compiled forest and fast transform it names still reproduce the pipeline's recorded
        probabilities: identical labels, within ``parity_tolerance``, on the parity rows and
        the unknown-category probes. False (the caller loads the pipeline) otherwise.

        The bundle this host's model cache holds comes first, then the one logged with the
        version at training (``extra_files``), if this runtime's file name matches it."""
        if self.model_dir is None or self.reference is None or self.reference_file is None:
            return False
        cached = compiled_file(self.model_dir)
        logged = self.model_dir / "extra_files" / compiled_name()
        for compiled, where in ((cached, "the model cache"), (logged, "the version's artifacts")):
            bundle = read_bundle(compiled, self.reference_file) if compiled is not None else None
            if compiled is not None and bundle is not None and self._use_bundle(compiled, bundle, options):
                self._chose(f"onnx (the serving bundle in {where}: labels identical and max |dp| "
                            f"within {options.parity_tolerance:g} on {len(bundle.expected)} reference "
                            "rows, the pipeline not read)")
                return True
        return False

    def _use_bundle(self, compiled: Path, bundle: Bundle, options: PredictorOptions) -> bool:
        assert self.reference is not None
        try:
            onnx = OnnxForest(compiled)
        except CompileFailed as exc:
            log.warning("version %s: serving bundle not used: %s", self.version, exc)
            return False
        rows = self.reference.head(PARITY_ROWS)[list(FEATURE_NAMES)].to_dict("records")
        failed = self._bundle_mismatch(bundle.transform, onnx, rows, bundle, options.parity_tolerance)
        if failed:
            log.warning("version %s: serving bundle not used: %s", self.version, failed)
            return False
        self.class_names, self.options = bundle.classes, options
        self.fast, self.onnx = bundle.transform, onnx
        return True

    def _bundle_mismatch(self, fast: FastTransform, onnx: OnnxForest, rows: list[dict[str, Any]],
                         bundle: Bundle, tolerance: float) -> str | None:
        """What the bundle's transform and forest get wrong against the pipeline's recorded
        probabilities (None: nothing)."""
        if len(rows) != len(bundle.expected):
            return f"it was checked on {len(bundle.expected)} reference rows, the sample has {len(rows)}"
        x = fast.transform_rows(rows)
        one_by_one = [fast.transform_rows(rows[i:i + 1]) for i in range(min(len(rows), 200))]
        if not (np.array_equal(fast.transform_frame(to_frame(rows)), x)
                and np.array_equal(np.vstack(one_by_one), x[:len(one_by_one)])):
            return "the fast transform's paths disagree"
        checks = [("reference rows", onnx.predict_proba(x), bundle.expected)]
        try:
            probed = fast.transform_rows(self._probes())
        except ValueError:
            probed = None
        if (probed is None) != (bundle.probes is None):
            return "the fast transform treats unknown categories otherwise than the pipeline did"
        if probed is not None and bundle.probes is not None:
            checks.append(("unknown-category probes", onnx.predict_proba(probed), bundle.probes))
        for what, proba, expected in checks:
            if proba.shape != expected.shape:
                return f"{what}: probabilities of shape {proba.shape}, recorded {expected.shape}"
            gap = float(np.abs(proba - expected).max())
            # Both in classes_ order: the same argmax is the same label (ties alike). Nothing
            # cached on the model (its class columns) is derived before the bundle is accepted.
            if gap > tolerance or not np.array_equal(proba.argmax(axis=1), expected.argmax(axis=1)):
                return f"{what}: max |dp| {gap:.1e} (tolerance {tolerance:g}) or labels differ"
        return None

    def enable_lean_path(self) -> None:
        """The lean path (no compiled forest), checked on the reference sample."""
        self.enable_predictor(PredictorOptions(predictor="lean"))

    def enable_predictor(self, options: PredictorOptions, model_dir: Path | None = None, *,
                         target: Path | None = None) -> None:
        """Use the fastest path ``options`` allow that reproduces the pipeline on the reference
        sample: the lean path and the fast transform exactly, the compiled forest with identical
        labels and probabilities within ``parity_tolerance``. Never fails: a path that cannot be
        built or checked is not used (a warning says why). The compiled forest is at ``target``,
        else in the model cache if ``model_dir`` is in it."""
        from app.serving.lean_predict import LeanPredictor

        pipeline = self.fitted()
        self.lean = self.onnx = self.fast = self.pending_compile = None
        self.options = options
        if options.predictor == "pipeline":
            return self._chose("the pipeline (FS_MODEL_PREDICTOR=pipeline)")
        try:
            lean = LeanPredictor(
                pipeline, large_rows=options.large_batch_rows, threads=options.large_batch_threads
            )
        except Unsupported as exc:
            return self._chose(f"the pipeline (lean path not supported: {exc})")
        if self.reference is None:
            self.lean = lean
            return self._chose("lean, unchecked and not compiled (the version has no reference sample)")
        rows = self.reference.head(PARITY_ROWS)[list(FEATURE_NAMES)].to_dict("records")
        frame = to_frame(rows)
        expected = pipeline.predict_proba(frame)
        x = self._check_fast_transform(lean, rows, frame)
        if not np.array_equal(lean.forest_proba(x), expected):
            log.warning("version %s: lean path disagrees with the pipeline; not used", self.version)
            return self._chose("the pipeline (the lean path disagrees with it)")
        self.lean, self.fast = lean, lean.fast
        if options.predictor == "lean":
            return self._chose("lean (FS_MODEL_PREDICTOR=lean)")
        if lean.fast is None or not lean.sums_trees:
            return self._chose("lean (no compiled path: needs a random forest and the fast transform)")
        if target is None and model_dir is not None:
            target = compiled_file(model_dir)
        if target is None:
            return self._chose("lean (not compiled: the model directory is not in the model cache)")
        if not target.exists():
            # Converting takes seconds (longer on a busy host): serve the lean path now and switch
            # when ``compile_pending`` (run by the slot in the background) has checked the result.
            self.pending_compile = (options, target)
            return self._chose("lean (the compiled forest is being built in the background)")
        self._use_compiled(options, target, rows, x, expected)

    def compile_pending(self) -> bool:
        """Build, check and switch to the compiled forest deferred at load (blocking: run it in a
        thread). True when the onnx path is now in use. Requests keep predicting meanwhile: the
        switch is one assignment."""
        if self.pending_compile is None or self.lean is None or self.reference is None:
            return False
        options, target = self.pending_compile
        self.pending_compile = None
        rows = self.reference.head(PARITY_ROWS)[list(FEATURE_NAMES)].to_dict("records")
        frame = to_frame(rows)
        x = self.lean.transform(rows)
        self._use_compiled(options, target, rows, x, self.fitted().predict_proba(frame))
        return self.onnx is not None

    def _use_compiled(self, options: PredictorOptions, target: Path, rows: list[dict[str, Any]],
                      x: npt.NDArray[Any], expected: npt.NDArray[np.float64]) -> None:
        assert self.lean is not None and self.lean.fast is not None
        try:
            onnx, how = open_compiled(self.lean.classifier, self.lean.fast.width, target,
                                      options.compile_timeout_s)
            proba = onnx.predict_proba(x)
        except Exception as exc:  # the compiled path is optional: any failure leaves the lean one
            log.warning("version %s: compiled forest not used: %s", self.version, exc)
            return self._chose(f"lean (the compiled forest failed: {type(exc).__name__})")
        gap = float(np.abs(proba - expected).max())
        same = self.levels_of(self._in_level_order(proba)) == self.levels_of(self._in_level_order(expected))
        figures = f"max |dp| {gap:.1e} (tolerance {options.parity_tolerance:g}), labels " + (
            "identical" if same else "differ") + f" on {len(rows)} reference rows; {how}"
        if not same or gap > options.parity_tolerance:
            log.warning("version %s: compiled forest fails the parity check (%s); not used",
                        self.version, figures)
            return self._chose(f"lean (the compiled forest fails the parity check: {figures})")
        self.onnx = onnx
        self._chose(f"onnx ({figures})")
        self._write_bundle(target, expected)

    def _write_bundle(self, compiled: Path, expected: npt.NDArray[np.float64]) -> None:
        """Record what the check saw, so that a later load serves from the bundle (a failure
        only costs that later load the long way)."""
        if self.reference_file is None or self.fast is None:
            return
        try:
            probes: npt.NDArray[np.float64] | None = self.fitted().predict_proba(
                to_frame(self._probes()))
        except ValueError:  # the encoder refuses unknown categories (and the fast transform too)
            probes = None
        try:
            written = write_bundle(compiled, self.reference_file,
                                   Bundle(self.classes, self.fast, expected, probes))
        except OSError as exc:
            log.warning("version %s: serving bundle not written: %s", self.version, exc)
            return
        log.info("version %s: serving bundle written (%s)", self.version, written)

    def _probes(self) -> list[dict[str, Any]]:
        """Reference rows with every category unknown to the encoder."""
        assert self.reference is not None
        rows = self.reference.head(20)[list(FEATURE_NAMES)].to_dict("records")
        return [dict(row, **dict.fromkeys(CATEGORICAL, UNKNOWN_PROBE)) for row in rows]

    def _chose(self, note: str) -> None:
        self.predictor_note = note
        log.info("version %s predicts by %s", self.version, note)

    def _check_fast_transform(self, lean: LeanPredictor, rows: list[dict[str, Any]],
                              frame: pd.DataFrame) -> npt.NDArray[Any]:
        """The model matrix of the sample; ``lean`` takes the fast transform if it reproduces the
        fitted one exactly (also on rows of unknown categories)."""
        preprocess = self.fitted().steps[0][1]
        try:
            fast = FastTransform.of(preprocess)
        except Unsupported as exc:
            log.info("version %s: fast transform not used (%s)", self.version, exc)
            return lean.transform(rows)
        expected = _dense32(preprocess.transform(frame))
        probes = self._probes()
        one_by_one = [fast.transform_rows(rows[i:i + 1]) for i in range(min(len(rows), 200))]
        same = (
            np.array_equal(fast.transform_rows(rows), expected)
            and np.array_equal(fast.transform_frame(frame), expected)
            and np.array_equal(np.vstack(one_by_one), expected[:len(one_by_one)])  # the small-call path
            and _same_outcome(lambda: fast.transform_rows(probes),
                              lambda: _dense32(preprocess.transform(to_frame(probes))))
            and _same_outcome(lambda: np.vstack([fast.transform_rows([p]) for p in probes]),
                              lambda: _dense32(preprocess.transform(to_frame(probes))))
        )
        if not same:
            log.warning("version %s: fast transform disagrees with the pipeline's; not used", self.version)
            return lean.transform(rows)
        lean.use_fast_transform(fast)
        return expected


def _dense32(matrix: Any) -> npt.NDArray[np.float32]:
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    return np.ascontiguousarray(dense, dtype=np.float32)


def _same_outcome(ours: Any, theirs: Any) -> bool:
    """Both give the same matrix, or both refuse the input (an encoder without handle_unknown)."""
    results = []
    for compute in (ours, theirs):
        try:
            results.append(compute())
        except ValueError:
            results.append(None)
    if results[0] is None or results[1] is None:
        return results[0] is None and results[1] is None
    return np.array_equal(results[0], results[1])


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated rows -> a model input frame in schema column order."""
    frame = pd.DataFrame.from_records(rows, columns=FEATURE_NAMES)
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(object)
    return frame


_SCORE_WEIGHTS = np.array([SCORE_WEIGHTS[level] for level in LEVELS])


def score_of(proba: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    scores: npt.NDArray[np.float64] = 100.0 * proba @ _SCORE_WEIGHTS
    return scores


def load_calibration(path: Path) -> Calibration | None:
    """The version's calibration maps, if it was trained with them (a damaged file is logged
    and treated as absent: estimation is then unavailable, serving is not affected)."""
    calibration_path = path / "extra_files" / CALIBRATION_FILE
    if not calibration_path.exists():
        return None
    try:
        return Calibration.from_dict(json.loads(calibration_path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the calibration file of %s: %s", path.name, exc)
        return None


def read_pipeline(path: Path) -> Any:
    """The fitted pipeline of a downloaded version (blocking)."""
    pipeline = mlflow.sklearn.load_model(str(path))
    # Deserialising frees as much as it keeps (~85 MiB for the demo forest's 43 MiB of trees):
    # return it before the next allocations settle on top of it.
    return_freed_memory()
    return pipeline


def load_from_path(ref: VersionRef, path: Path, options: PredictorOptions | None = None) -> LoadedModel:
    """Load a downloaded MLflow model directory (blocking: run it in a thread); the prediction
    path is chosen by ``options`` (default: the fastest that passes its check). A compiled
    forest is cached beside the version when ``path`` is in the model cache, with the serving
    bundle a later load serves from without reading the pipeline."""
    signature = Model.load(str(path)).signature
    reference_path = path / "extra_files" / REFERENCE_FILE
    reference = pd.read_parquet(reference_path) if reference_path.exists() else None
    holdout_path = path / "extra_files" / HOLDOUT_FILE
    model = LoadedModel(ref=ref, pipeline=None, signature=signature, reference=reference,
                        calibration=load_calibration(path),
                        holdout=pd.read_parquet(holdout_path) if holdout_path.exists() else None,
                        model_dir=path, reference_file=reference_path if reference is not None else None)
    if options is not None and options.predictor == "onnx" and model.serve_bundle(options):
        return model
    # Without options (a policy's candidate, a version described for the audit): the lean path,
    # nothing compiled; the serving slot passes the settings' options.
    model.enable_predictor(options or PredictorOptions(predictor="lean"), path)
    return model


def compile_for_logging(pipeline: Any, reference_file: Path, directory: Path,
                        options: PredictorOptions) -> list[Path]:
    """Training: the compiled forest and serving bundle to log with a new version, built into
    ``directory`` and checked against ``pipeline`` as a serving load would (blocking, seconds);
    empty when the version gets no compiled path (a forest that fails its check has been
    warned about; another classifier has none)."""
    ref = VersionRef(name="new version", version="(training)", run_id=None, source=str(directory))
    model = LoadedModel(ref=ref, pipeline=pipeline, signature=None,
                        reference=pd.read_parquet(reference_file), reference_file=reference_file)
    target = directory / compiled_name()
    model.enable_predictor(options, target=target)
    model.compile_pending()
    if model.onnx is None or not manifest_file(target).exists():
        log.info("the new version is logged without a compiled forest: %s", model.predictor_note)
        return []
    return [target, manifest_file(target)]
