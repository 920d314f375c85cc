"""Retraining: a candidate trained on the base data plus the logged predictions people gave
feedback on, registered, pointed at by the challenger alias and filed as a proposal that waits
for a person (``app.training.proposals`` approves or rejects it; docs/retraining.md).

The data: the base synthetic rows training uses (``FS_TRAIN_ROWS`` / ``FS_TRAIN_SEED``, weight 1)
and every prediction of the model logged inside ``FS_RETRAIN_FEEDBACK_WINDOW`` that has feedback:
its logged features, labelled with its latest feedback, weighing ``FS_RETRAIN_FEEDBACK_WEIGHT``.
The held-out evaluation stays on base rows (``app.training.fit``), so the candidate's metrics
compare with Production's and the promotion policy judges like for like.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.queries import latest_per_prediction
from app.db.session import read_only, unit_of_work
from app.db.tables import Prediction, PredictionFeedback, RetrainingProposal
from app.errors import NotEnoughFeedback
from app.ml.features import FEATURE_NAMES, LEVELS, TARGET
from app.ml.synthetic import generate
from app.registry.client import ModelRegistry
from app.serving.loaded_model import to_frame
from app.training.fit import SAMPLE_WEIGHT, Progress, no_progress
from app.training.train import ACTOR, TrainingComponents, TrainingResult, record_run, register_version

log = logging.getLogger(__name__)

OPEN, APPROVED, REJECTED = "open", "approved", "rejected"
TRIGGERS = ("manual", "drift")
BASE_WEIGHT = 1.0


@dataclass(frozen=True)
class Proposal:
    """One ``retraining_proposal`` row."""

    id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    base_version: str | None
    run_id: str
    trigger: str
    status: str
    window_start: datetime | None
    window_end: datetime | None
    data: dict[str, Any]
    metrics: dict[str, float]
    detail: dict[str, Any] = field(default_factory=dict)
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None

    @classmethod
    def from_row(cls, row: RowMapping) -> Proposal:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FeedbackRows:
    """Logged predictions with feedback: features and the latest feedback as the label."""

    frame: pd.DataFrame
    start: datetime
    end: datetime
    skipped: int  # predictions whose logged features do not fit the schema (none today)


async def feedback_rows(engine: AsyncEngine, model_name: str, start: datetime,
                        end: datetime) -> FeedbackRows:
    """Predictions of ``model_name`` (any version) made in [start, end) that have feedback."""
    p = Prediction.__table__
    ranked = latest_per_prediction(PredictionFeedback.__table__, "actual_level")
    stmt = (
        select(p.c.features, ranked.c.actual_level)
        .join(ranked, ranked.c.prediction_id == p.c.id)
        .where(ranked.c.rn == 1, p.c.model_name == model_name, p.c.created_at >= start,
               p.c.created_at < end)
        .order_by(p.c.created_at, p.c.id)
    )
    async with read_only(engine, "logged feedback cannot be read right now") as conn:
        rows = (await conn.execute(stmt)).all()
    usable = [(features, level) for features, level in rows
              if level in LEVELS and all(features.get(n) is not None for n in FEATURE_NAMES)]
    frame = to_frame([features for features, _ in usable])
    frame[TARGET] = [level for _, level in usable]
    return FeedbackRows(frame, start, end, skipped=len(rows) - len(usable))


def _train_candidate(settings: Settings, registry: ModelRegistry, feedback: pd.DataFrame,
                     tags: dict[str, str], progress: Progress) -> TrainingResult:
    """Base rows + weighted feedback rows -> a registered version (blocking)."""
    cfg = settings.training
    base = generate(cfg.rows, seed=cfg.seed)
    extra = feedback.assign(**{SAMPLE_WEIGHT: settings.retrain.feedback_weight})
    data = pd.concat([base, extra], ignore_index=True) if len(extra) else base
    result = register_version(settings, registry, data=data, extra_tags=tags, progress=progress)
    for key in ("retrain.trigger", "retrain.proposal"):  # findable from the version too
        registry.client.set_model_version_tag(result.model_name, result.version, key, tags[key])
    return result


async def retrain(components: TrainingComponents, *, trigger: str = "manual",
                  actor: str = ACTOR, detail: dict[str, Any] | None = None,
                  now: datetime | None = None, progress: Progress = no_progress) -> Proposal:
    """Train, register and log a candidate, point the challenger alias at it (audited, by
    ``actor``), record the training run and an open proposal. Raises ``NotEnoughFeedback``
    before any work when the window holds fewer feedback rows than
    ``FS_RETRAIN_MIN_FEEDBACK_ROWS``."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown retraining trigger {trigger!r}")
    settings = components.settings
    cfg, name = settings.retrain, settings.model.name
    end = now or datetime.now(UTC)
    feedback = await feedback_rows(components.engine, name, end - cfg.feedback_window.timedelta, end)
    found = len(feedback.frame)
    if found < cfg.min_feedback_rows:
        raise NotEnoughFeedback(
            f"{found} logged prediction(s) with feedback in the last {cfg.feedback_window}; "
            f"retraining needs at least {cfg.min_feedback_rows} (FS_RETRAIN_MIN_FEEDBACK_ROWS)")
    production = await components.lifecycle.production(name)
    proposal_id = uuid.uuid4()
    weights = {"base": BASE_WEIGHT, "feedback": cfg.feedback_weight}
    data = {
        "base_rows": settings.training.rows, "feedback_rows": found,
        "skipped_feedback_rows": feedback.skipped, "weights": weights,
        "feedback_levels": {level: int(n) for level, n in
                            feedback.frame[TARGET].value_counts().items()},
    }
    tags = {
        "retrain.trigger": trigger, "retrain.proposal": str(proposal_id),
        "retrain.window_start": feedback.start.isoformat(),
        "retrain.window_end": feedback.end.isoformat(),
        "retrain.base_rows": str(settings.training.rows), "retrain.feedback_rows": str(found),
        "retrain.base_weight": str(BASE_WEIGHT), "retrain.feedback_weight": str(cfg.feedback_weight),
        "retrain.base_version": production.version if production else "",
    }
    result = await asyncio.to_thread(_train_candidate, settings, components.registry,
                                     feedback.frame, tags, progress)
    await components.lifecycle.set_challenger(name, result.version, actor=actor,
                                              reason=f"retraining proposal {proposal_id}")
    await record_run(components.engine, result)
    proposal = Proposal(
        id=proposal_id, created_at=datetime.now(UTC), model_name=name,
        model_version=result.version, base_version=production.version if production else None,
        run_id=result.run_id, trigger=trigger, status=OPEN, window_start=feedback.start,
        window_end=feedback.end, data=data,
        metrics={k: float(v) for k, v in result.metrics.items()}, detail=dict(detail or {}),
    )
    async with unit_of_work(components.engine, "the proposal cannot be stored right now") as conn:
        await conn.execute(insert(RetrainingProposal).values(**vars(proposal)))
    log.info("retraining (%s): version %s of %s proposed (%d feedback rows, run %s)", trigger,
             result.version, name, found, result.run_id)
    return proposal
