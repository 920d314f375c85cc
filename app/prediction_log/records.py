"""Spool records and their encoding (one JSON line per record).

Two kinds share the spool: predictions (the line has no ``kind``, as it always had) and feedback
(``"kind": "feedback"``). Each carries its own uuid, so replaying a line writes at most one row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson

PREDICTION = "prediction"
FEEDBACK = "feedback"
KINDS = (PREDICTION, FEEDBACK)


@dataclass(frozen=True)
class PredictionRecord:
    id: uuid.UUID
    created_at: datetime
    model_name: str
    model_version: str
    features: dict[str, Any]
    level: str
    probabilities: dict[str, float]
    score: float
    latency_ms: float
    request_id: str | None
    protocol: str
    subject_hash: str | None = None  # HMAC of the subject id; the raw id never gets this far
    needs_review: bool = False  # confidence below the review threshold (app/oversight)

    def as_row(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies every feature dict, which cost about half of a
        # 100-row request's CPU. Records are frozen and their dicts are never mutated.
        return {f.name: getattr(self, f.name) for f in _FIELDS}


@dataclass(frozen=True)
class FeedbackRecord:
    """One submission of ground truth; ``id`` is the ``prediction_feedback`` row's key."""

    id: uuid.UUID
    prediction_id: uuid.UUID
    actual_level: str
    created_at: datetime
    kind: str = FEEDBACK


_FIELDS = fields(PredictionRecord)


def encode(record: PredictionRecord | FeedbackRecord | dict[str, Any]) -> bytes:
    """One spool line (newline included); orjson writes dataclasses, UUIDs and aware datetimes.
    A record's row (``as_row()``, keys in field order) gives the same bytes as the record."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def decode_entry(line: bytes) -> tuple[str, dict[str, Any]]:
    """A spool line as (kind, row of its table); raises ValueError on a line that is not a record."""
    try:
        row = orjson.loads(line)
        kind = row.pop("kind", PREDICTION)
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        row["id"] = uuid.UUID(row["id"])
        row["created_at"] = datetime.fromisoformat(row["created_at"])
        if kind == FEEDBACK:
            row["prediction_id"] = uuid.UUID(row["prediction_id"])
        else:  # lines spooled before the review flag existed; COPY writes every column
            row.setdefault("needs_review", False)
    except (KeyError, TypeError, AttributeError) as exc:  # valid JSON, but not a record
        raise ValueError(f"not a spool record: {type(exc).__name__} {exc}") from exc
    return kind, row


def decode(line: bytes) -> dict[str, Any]:
    """A spool line back into a row of its table; raises ValueError on a damaged line."""
    return decode_entry(line)[1]


def record_id(line: bytes) -> uuid.UUID:
    rid: uuid.UUID = decode(line)["id"]
    return rid
