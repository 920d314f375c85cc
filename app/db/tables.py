"""ORM tables (DESIGN.md section 3). Singular snake_case names, ``*_at`` timestamps, UUID keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON everywhere, JSONB on Postgres.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is written in UTC and always read back timezone-aware.

    Postgres returns ``timestamptz`` aware already; SQLite stores text without an offset and
    would hand back naive values, which the API would then serialize without a zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Prediction(Base):
    __tablename__ = "prediction"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    features: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    level: Mapped[str] = mapped_column(String(10))
    probabilities: Mapped[dict[str, float]] = mapped_column(JsonDoc)
    score: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(100))
    protocol: Mapped[str] = mapped_column(String(20), default="v1")
    subject_hash: Mapped[str | None] = mapped_column(String(64))
    # Confidence below the review threshold when it was made: listed in the review queue until a
    # person reviews it (docs/accountability.md).
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    __table_args__ = (
        Index("ix_prediction_created_at", "created_at"),
        Index("ix_prediction_model_version_created_at", "model_name", "model_version", "created_at"),
        Index("ix_prediction_needs_review_created_at", "needs_review", "created_at"),
        # Erasure finds a subject's rows by pseudonym; most rows have none, so they stay out.
        Index("ix_prediction_subject_hash", "subject_hash",
              postgresql_where=text("subject_hash IS NOT NULL"),
              sqlite_where=text("subject_hash IS NOT NULL")),
    )


class PredictionFeedback(Base):
    """Ground truth that arrives later. No foreign key: the prediction may still be in the spool."""

    __tablename__ = "prediction_feedback"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    prediction_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actual_level: Mapped[str] = mapped_column(String(10))


class PredictionExplanation(Base):
    """The explanation of one prediction, stored the first time it is computed so that a later
    read returns the same document, even after the version that made it is archived."""

    __tablename__ = "prediction_explanation"

    prediction_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    method: Mapped[str] = mapped_column(String(40))
    document: Mapped[dict[str, Any]] = mapped_column(JsonDoc)


class PredictionReview(Base):
    """Append-only human reviews of predictions. No foreign key, like feedback."""

    __tablename__ = "prediction_review"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    prediction_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    reviewer: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(10))  # "accept" or "override"
    level: Mapped[str] = mapped_column(String(10))  # the final decision's level
    reason: Mapped[str] = mapped_column(Text)


class ShadowPrediction(Base):
    """The challenger's answer to a prediction Production answered (never returned to the caller).
    Keyed by the prediction it shadows; no foreign key, like feedback (the prediction may still be
    in the spool)."""

    __tablename__ = "shadow_prediction"

    prediction_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))  # the challenger's
    champion_version: Mapped[str] = mapped_column(String(50))  # the version that answered
    level: Mapped[str] = mapped_column(String(10))
    probabilities: Mapped[dict[str, float]] = mapped_column(JsonDoc)
    score: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)  # the challenger's call, shared by its rows

    __table_args__ = (
        Index("ix_shadow_prediction_model_version_created_at", "model_name", "model_version",
              "created_at"),
    )


class RetrainingProposal(Base):
    """A candidate trained by ``retrain`` (by hand or on drift), waiting for a person to approve
    (promotion through the policy) or reject it."""

    __tablename__ = "retraining_proposal"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))  # the candidate
    base_version: Mapped[str | None] = mapped_column(String(50))  # Production when proposed
    run_id: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(20))  # "manual" or "drift"
    status: Mapped[str] = mapped_column(String(20))  # "open", "approved", "rejected", "refused"
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # rows, feedback rows, weights
    metrics: Mapped[dict[str, float]] = mapped_column(JsonDoc)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # e.g. the drift report that triggered it
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_reason: Mapped[str | None] = mapped_column(Text)


class ModelSuspension(Base):
    """The stop switch's current state per model; every change is also audited in
    ``model_promotion`` (actions ``suspend`` and ``resume``)."""

    __tablename__ = "model_suspension"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    suspended: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SubjectErasure(Base):
    """Audit of ``db erase-subject``: the pseudonym and what was removed, never the raw id."""

    __tablename__ = "subject_erasure"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    subject_hash: Mapped[str] = mapped_column(String(64))
    removed: Mapped[dict[str, int]] = mapped_column(JsonDoc)


class ModelPromotion(Base):
    """Append-only audit of promotions, rollbacks and failed reloads."""

    __tablename__ = "model_promotion"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(30))
    from_version: Mapped[str | None] = mapped_column(String(50))
    to_version: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)


class DriftReport(Base):
    __tablename__ = "drift_report"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    engine: Mapped[str] = mapped_column(String(20))
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reference_rows: Mapped[int] = mapped_column(Integer)
    current_rows: Mapped[int] = mapped_column(Integer)
    drift_share: Mapped[float] = mapped_column(Float)
    dataset_drift: Mapped[bool]
    result: Mapped[dict[str, Any]] = mapped_column(JsonDoc)


class TrainingRun(Base):
    __tablename__ = "training_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    experiment: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(50))
    algorithm: Mapped[str] = mapped_column(String(50))
    rows: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    metrics: Mapped[dict[str, float]] = mapped_column(JsonDoc)
    status: Mapped[str] = mapped_column(String(20))


class ScheduledRun(Base):
    """One row per periodic job and time slot: the worker whose insert wins runs the job, so
    workers and replicas sharing the database run each periodic check once."""

    __tablename__ = "scheduled_run"

    job: Mapped[str] = mapped_column(String(50), primary_key=True)
    slot: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(String(20))  # "ok", "skipped", "failed"
    report_id: Mapped[str | None] = mapped_column(String(36))
