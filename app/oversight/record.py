"""The decision record: everything about one prediction in one document.

What the EU AI Act asks of a high-risk system's logs, per inference: the input, the output, the
model that produced it (name, registry version, semver, the MLflow run that trained it), why
(the explanation), what people made of it (reviews, the final level), what happened later
(feedback), and when and through which request. Assembled from the stores that already hold each
part; nothing is copied, so an erased subject's record is gone with the rest.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from app.errors import (
    DatabaseUnavailable,
    ExplanationUnavailable,
    ModelNotFound,
    PredictionNotFound,
    RegistryUnavailable,
)
from app.explanations.service import ExplanationService
from app.oversight.reviews import ReviewService
from app.prediction_log.feedback import FeedbackService
from app.prediction_log.log import PredictionLog
from app.registry.client import ModelRegistry, VersionRef

log = logging.getLogger(__name__)


class DecisionRecords:
    def __init__(self, *, prediction_log: PredictionLog, feedback: FeedbackService,
                 reviews: ReviewService, explanations: ExplanationService,
                 registry: ModelRegistry) -> None:
        self._log = prediction_log
        self._feedback = feedback
        self._reviews = reviews
        self._explanations = explanations
        self._registry = registry

    async def record(self, prediction_id: uuid.UUID) -> dict[str, Any]:
        row = await self._log.get(prediction_id)
        if row is None:
            raise PredictionNotFound("no prediction with this id")
        oversight = await self._reviews.oversight_of(row)
        history = await self._feedback.history(prediction_id)
        version, version_note = await self._version(row["model_name"], row["model_version"])
        explanation, explanation_note = await self._explanation(prediction_id)
        return {
            "prediction_id": row["id"],
            "created_at": row["created_at"],
            "request_id": row.get("request_id"),
            "protocol": row.get("protocol"),
            # Whether a subject id came with the request; the pseudonym itself stays in the log.
            "subject_pseudonymized": row.get("subject_hash") is not None,
            "input": row["features"],
            "output": {"level": row["level"], "score": row["score"],
                       "probabilities": row["probabilities"],
                       "needs_review": oversight.needs_review, "latency_ms": row["latency_ms"]},
            "model": {"name": row["model_name"], "version": row["model_version"],
                      "semver": version.semver if version else None,
                      "run_id": version.run_id if version else None,
                      "note": version_note},
            "explanation": explanation,
            "explanation_note": explanation_note,
            "reviews": [asdict(r) for r in oversight.reviews],
            "final_level": oversight.final_level,
            "feedback": [asdict(f) for f in reversed(history)],  # oldest first, like reviews
            "generated_at": datetime.now(UTC),
        }

    async def _version(self, name: str, version: str) -> tuple[VersionRef | None, str | None]:
        """The registered version (semver, run id); a deleted version or an unreachable
        registry leaves them null with a note, never the record itself."""
        try:
            return await asyncio.to_thread(self._registry.get_version, name, version), None
        except ModelNotFound:
            return None, "the version is no longer in the registry"
        except RegistryUnavailable:
            return None, "the model registry could not be read; semver and run id are missing"

    async def _explanation(self, prediction_id: uuid.UUID) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return await self._explanations.explain_prediction(prediction_id), None
        except ExplanationUnavailable as exc:
            return None, exc.message
        except (ModelNotFound, RegistryUnavailable, DatabaseUnavailable) as exc:
            log.warning("decision record of %s without its explanation: %s", prediction_id,
                        exc.message)
            return None, f"the explanation could not be produced right now: {exc.message}"
