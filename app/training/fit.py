"""Data -> fit -> held-out evaluation: what training and ``train --dry-run`` share.

Blocking (scikit-learn) and free of any store: nothing here talks to MLflow or the database.

Training data may carry a ``sample_weight`` column (retraining, ``app.training.retrain``): rows
with a weight are extra rows (logged predictions with feedback), fitted with that weight and
never held out; rows without one (NaN) are the base data, split as usual and fitted with weight
1. The held-out evaluation stays on base rows only, so metrics compare with earlier versions'.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from app.config import Settings
from app.lifecycle.versioning import VersionRecord, hyperparameters_of, signature_fingerprint
from app.ml.calibration import (
    CALIBRATION_FILE,
    HOLDOUT_FILE,
    Calibration,
    expected_calibration_error,
    fit_calibration,
)
from app.ml.evaluation import evaluate, split
from app.ml.features import FEATURE_NAMES, LEVELS, TARGET
from app.ml.pipeline import build_pipeline
from app.ml.synthetic import generate
from app.serving.loaded_model import PredictorOptions, compile_for_logging

# skops refuses types it does not know; these are the tree internals of our pipeline's models.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.dtype"]
STAGES = ("data", "fit", "evaluate", "log", "compile", "register")
# The optional weight column of the training data (see the module docstring).
SAMPLE_WEIGHT = "sample_weight"

Progress = Callable[[str], None]

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not by every worker
    from matplotlib.figure import Figure


def no_progress(stage: str) -> None:
    """The default progress callback: training reports its stages to nobody."""


def load_data(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in (*FEATURE_NAMES, TARGET) if c not in df.columns]
    if missing:
        raise ValueError(f"training data lacks columns: {', '.join(missing)}")
    return df[[*FEATURE_NAMES, TARGET]]


@dataclass
class FittedModel:
    """A fitted, evaluated pipeline and what logging or a dry run needs of it."""

    model: Any  # a fitted scikit-learn Pipeline (scikit-learn ships no types)
    metrics: dict[str, float]
    params: dict[str, object]
    data: pd.DataFrame
    train_rows: int
    test: pd.DataFrame
    reference: pd.DataFrame
    example: pd.DataFrame
    signature: Any  # mlflow.models.ModelSignature
    calibration: Calibration | None = None
    # Held-out rows the calibration was judged on (features and label): the reference of
    # confidence and importance drift, which rows the forest was grown on would bias.
    holdout: pd.DataFrame | None = None

    def record(self, run_id: str, algorithm: str) -> VersionRecord:
        return VersionRecord(
            run_id=run_id,
            metrics={k: v for k, v in self.metrics.items() if not k.startswith("baseline")},
            training_rows=self.train_rows, features=list(FEATURE_NAMES),
            classes=[str(c) for c in self.model.classes_], algorithm=algorithm,
            hyperparameters=hyperparameters_of(self.model[-1]),
            signature=signature_fingerprint(self.signature),
        )

    def confusion_matrix(self) -> Figure:
        """The held-out confusion matrix. A bare ``Figure`` (no pyplot): no GUI backend is
        chosen and no global figure registry is touched, so training runs headless anywhere."""
        from matplotlib.figure import Figure
        from sklearn.metrics import ConfusionMatrixDisplay

        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        ConfusionMatrixDisplay.from_estimator(
            self.model, self.test[list(FEATURE_NAMES)], self.test[TARGET], labels=list(LEVELS),
            ax=ax, colorbar=False,
        )
        ax.set_title("Held-out confusion matrix")
        fig.tight_layout()
        return fig

    def feature_importances(self) -> dict[str, float]:
        values = getattr(self.model[-1], "feature_importances_", None)
        if values is None:
            return {}
        names = self.model[:-1].get_feature_names_out()
        pairs = ((str(n), float(v)) for n, v in zip(names, values, strict=True))
        return dict(sorted(pairs, key=lambda kv: -kv[1]))


def fit_and_evaluate(settings: Settings, data: pd.DataFrame | None, rows: int | None,
                     seed: int | None, progress: Progress) -> FittedModel:
    """Data, fit, held-out evaluation (blocking; touches no store)."""
    cfg = settings.training
    seed = cfg.seed if seed is None else seed
    progress("data")
    df = data if data is not None else generate(rows or cfg.rows, seed=seed)
    base, extra = _base_and_extra(df)
    base_train, test = split(base, cfg.test_size, seed)
    train = (pd.concat([base_train, extra[[*FEATURE_NAMES, TARGET]]], ignore_index=True)
             if len(extra) else base_train)
    x_train, y_train = train[list(FEATURE_NAMES)], train[TARGET]

    progress("fit")
    params: dict[str, object] = {"n_estimators": cfg.n_estimators} if cfg.algorithm == "random_forest" else {}
    pipeline = build_pipeline(cfg.algorithm, params, seed)
    fit_params: dict[str, Any] = {}
    if len(extra):  # weights go to the classifier step only (the transformers take none)
        weights = np.concatenate([np.ones(len(base_train)), extra[SAMPLE_WEIGHT].to_numpy(float)])
        fit_params[f"{pipeline.steps[-1][0]}__sample_weight"] = weights
    model = pipeline.fit(x_train, y_train, **fit_params)

    progress("evaluate")
    metrics = evaluate(model, base_train, test)  # the majority baseline of the base rows
    calibration, calibration_metrics, holdout = calibrate(model, test, seed)
    metrics |= calibration_metrics
    example = x_train.head(5)
    with warnings.catch_warnings():  # integer columns are never missing: bounds are enforced
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, model.predict(example))
    logged_params = {
        "algorithm": cfg.algorithm, "seed": seed, "rows": len(df), "train_rows": len(train),
        "test_rows": len(test), "test_size": cfg.test_size, **params,
        **({"weighted_rows": len(extra)} if len(extra) else {}),
    }
    reference = train.sample(min(cfg.reference_rows, len(train)), random_state=seed)
    return FittedModel(model, metrics, logged_params, df[[*FEATURE_NAMES, TARGET]], len(train),
                       test, reference, example, signature, calibration, holdout)


def _base_and_extra(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The base rows (no weight) and the weighted extra rows (module docstring)."""
    if SAMPLE_WEIGHT not in df.columns:
        return df, df.iloc[:0].assign(**{SAMPLE_WEIGHT: 1.0})
    weighted = df[SAMPLE_WEIGHT].notna()
    return df.loc[~weighted].drop(columns=[SAMPLE_WEIGHT]), df.loc[weighted]


def calibrate(model: Any, test: pd.DataFrame, seed: int
              ) -> tuple[Calibration | None, dict[str, float], pd.DataFrame | None]:
    """Per-class calibration maps fitted on one half of the held-out rows, judged on the other.

    Never the training rows: a forest is nearly certain on the rows it was grown on, so maps
    fitted there would learn nothing about its confidence on new rows. Too few held-out rows to
    split (a tiny training set): no calibration, and estimation says it is unavailable.
    """
    if len(test) < 40 or test[TARGET].nunique() < 2:
        return None, {}, None
    fit_half, check_half = split(test, 0.5, seed)
    classes = tuple(str(c) for c in model.classes_)
    features = list(FEATURE_NAMES)
    calibration = fit_calibration(model.predict_proba(fit_half[features]), fit_half[TARGET],
                                  classes)
    raw = model.predict_proba(check_half[features])
    return calibration, {
        "calibration_ece_before": expected_calibration_error(raw, check_half[TARGET], classes),
        "calibration_ece_after": expected_calibration_error(calibration.apply(raw),
                                                            check_half[TARGET], classes),
    }, check_half


def model_format(fitted: FittedModel, reference_path: Path,
                 compile_with: PredictorOptions | None = None) -> dict[str, Any]:
    """How the model is stored, logged or saved alike: skops, signature, input example, and as
    extra files the reference sample (written to ``reference_path``), the calibration maps and
    the held-out rows they were judged on (beside it), so every copy of the version has them;
    with ``compile_with``, also the compiled forest and its serving bundle (built beside it)."""
    fitted.reference.to_parquet(reference_path, index=False)
    extra_files = [str(reference_path)]
    if compile_with is not None:
        extra_files += [str(p) for p in compile_for_logging(
            fitted.model, reference_path, reference_path.parent, compile_with)]
    if fitted.calibration is not None:
        calibration_path = reference_path.with_name(CALIBRATION_FILE)
        calibration_path.write_text(json.dumps(fitted.calibration.to_dict()))
        extra_files.append(str(calibration_path))
    if fitted.holdout is not None:
        holdout_path = reference_path.with_name(HOLDOUT_FILE)
        fitted.holdout.to_parquet(holdout_path, index=False)
        extra_files.append(str(holdout_path))
    return {"signature": fitted.signature, "input_example": fitted.example,
            "skops_trusted_types": SKOPS_TRUSTED_TYPES, "extra_files": extra_files}
