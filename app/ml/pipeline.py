"""The scikit-learn pipeline: one-hot categoricals (unknowns ignored), scaled numerics, a classifier.

scikit-learn is imported when a pipeline is built, not with this module: a serving worker imports
the training code (retraining proposals) but, serving from a compiled bundle, never scikit-learn
(~100 MiB with the SciPy it loads; docs/predictors.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.ml.features import CATEGORICAL, NUMERIC

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ALGORITHMS = ("random_forest", "gradient_boosting", "logistic_regression")


def build_classifier(algorithm: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if algorithm == "random_forest":
        defaults = {"n_estimators": 100, "min_samples_leaf": 2, "n_jobs": 1}
        return RandomForestClassifier(random_state=seed, **(defaults | params))
    if algorithm == "gradient_boosting":
        return GradientBoostingClassifier(random_state=seed, **params)
    if algorithm == "logistic_regression":
        return LogisticRegression(max_iter=2000, **params)
    raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def build_pipeline(algorithm: str = "random_forest", params: dict[str, Any] | None = None,
                   seed: int = 42) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ("numeric", StandardScaler(), list(NUMERIC)),
        ]
    )
    return Pipeline(
        [("preprocess", preprocess), ("classifier", build_classifier(algorithm, params or {}, seed))]
    )
