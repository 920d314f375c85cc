"""Settings of training and of the model lifecycle (promotion policy, reloads, housekeeping)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.base import group


class TrainingSettings(BaseSettings):
    model_config = group("FS_TRAIN_")

    rows: int = Field(default=20_000, ge=100, description="Synthetic rows to train on")
    seed: int = Field(default=42, description="Seed of the data generator, the split and the model")
    algorithm: str = Field(default="random_forest", description="Estimator of the pipeline")
    n_estimators: int = Field(default=100, ge=1, description="Trees of the forest")
    test_size: float = Field(default=0.2, gt=0, lt=1, description="Held-out share for evaluation")
    reference_rows: int = Field(default=5_000, ge=10, description="Rows of training data kept for drift")
    compile_forest: bool = Field(
        default=True,
        description="Log the compiled forest and its serving bundle with each new version (a "
        "conversion of seconds at training, the .ort file's size more per version), so that a "
        "worker on any host serves it without scikit-learn from its first start "
        "(docs/predictors.md); off, each host converts on its first load",
    )


class LifecycleSettings(BaseSettings):
    """Promotion policy, hot reload and housekeeping (issue 3)."""

    model_config = group("FS_LIFECYCLE_")

    metric: str = Field(default="f1_macro", description="Held-out metric a candidate must improve")
    min_improvement: float = Field(default=0.0, ge=0, description="Least absolute gain over Production")
    min_relative_improvement: float = Field(
        default=0.0, ge=0, description="Least gain as a fraction of Production's"
    )
    allow_major: bool = Field(
        default=False, description="Let the policy promote a signature-changing version"
    )
    set_legacy_stage: bool = Field(default=False, description="Also move the deprecated 'Production' stage")
    retry_failed_s: float = Field(
        default=60.0, gt=0, description="Wait before reloading a version that failed"
    )
    min_shadow_feedback_rows: int = Field(
        default=0, ge=0,
        description="Live evidence: fewest rows the candidate shadow-scored next to Production "
        "that have feedback before the policy lets it through; 0 asks for none",
    )
    challenger_not_worse: bool = Field(
        default=False,
        description="Live evidence: on those rows the candidate's accuracy and macro-F1 must not "
        "be below Production's (by more than FS_LIFECYCLE_CHALLENGER_TOLERANCE)",
    )
    challenger_tolerance: float = Field(
        default=0.0, ge=0, le=1, description="How far below Production the candidate may be on live rows",
    )
    keep_versions: int = Field(default=5, ge=1, description="Versions kept unarchived by 'models archive'")
