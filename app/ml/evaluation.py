"""Held-out evaluation of a classifier and of the two baselines it must beat (scikit-learn is
imported by the functions that use it: see ``app.ml.pipeline``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.ml.features import LEVELS, TARGET


def split(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split so every class is in both parts in its proportion."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=df[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def rules_baseline(df: pd.DataFrame) -> np.ndarray:
    """The platform's former rules formula (DESIGN.md)."""
    s = (
        0.5 * df["trend_score"]
        + 0.3 * df["internal_usage"]
        + 0.2 * np.minimum(df["training_requests"] / 100.0, 1.0)
    )
    return np.select([s >= 0.7, s >= 0.4], ["HIGH", "MEDIUM"], default="LOW")


def majority_baseline(train: pd.DataFrame, n: int) -> np.ndarray:
    return np.full(n, train[TARGET].mode().iloc[0])


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    metrics = {
        f"{prefix}accuracy": accuracy_score(y_true, y_pred),
        f"{prefix}f1_macro": f1_score(y_true, y_pred, average="macro", labels=list(LEVELS)),
        f"{prefix}f1_weighted": f1_score(y_true, y_pred, average="weighted", labels=list(LEVELS)),
    }
    if not prefix:
        precision, recall, _, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=list(LEVELS), zero_division=0
        )
        for level, p, r in zip(LEVELS, precision, recall, strict=True):
            metrics[f"precision_{level}"] = float(p)
            metrics[f"recall_{level}"] = float(r)
    return {k: float(v) for k, v in metrics.items()}


def evaluate(model: Any, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Model metrics on the held-out split plus both baselines (prefixed)."""
    y_true = test[TARGET].to_numpy()
    features = test.drop(columns=[TARGET])
    metrics = classification_metrics(y_true, model.predict(features))
    metrics |= classification_metrics(
        y_true, majority_baseline(train, len(test)), prefix="baseline_majority_"
    )
    metrics |= classification_metrics(y_true, rules_baseline(features), prefix="baseline_rules_")
    return metrics
