"""Settings of the improvement loop (docs/improvement-loop.md): the challenger scored in the
shadow of Production, canary traffic, and retraining proposals."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from app.config.base import group
from app.config.durations import Duration


class ChallengerSettings(BaseSettings):
    model_config = group("FS_CHALLENGER_")

    alias: str = Field(
        default="challenger", min_length=1, max_length=100,
        description="Registry alias of the challenger: while it points at a version other than "
        "Production, every worker loads it and scores each prediction's rows with it in the shadow",
    )
    shadow: bool = Field(
        default=True,
        description="Shadow-score with the challenger when the alias is set (with this false and no "
        "canary the challenger is not loaded at all)",
    )
    shadow_queue_rows: int = Field(
        default=20_000, ge=1,
        description="Rows waiting to be shadow-scored per worker; beyond it shadow work is dropped "
        "and counted (fs_shadow_rows_total, outcome queue_full), never the caller's answer delayed",
    )
    shadow_batch_rows: int = Field(
        default=2_000, ge=1, description="Most rows the challenger scores in one call",
    )
    canary_percent: float = Field(
        default=0.0, ge=0, le=100,
        description="Share of predictions (in percent) the challenger answers instead of "
        "Production, sticky per subject_id; requests without one are drawn at random. 0: none",
    )


class RetrainSettings(BaseSettings):
    model_config = group("FS_RETRAIN_")

    feedback_window: Duration = Field(
        default=Duration("90d"),
        description="Logged predictions with feedback from this long back join the training data",
    )
    feedback_weight: float = Field(
        default=2.0, gt=0,
        description="Sample weight of a row taken from feedback (the base training rows weigh 1)",
    )
    min_feedback_rows: int = Field(
        default=1, ge=0, description="Fewest feedback rows a retraining needs to run",
    )
    on_drift: bool = Field(
        default=False,
        description="The periodic drift check files a retraining proposal when it detects dataset "
        "drift (once per drift episode)",
    )
