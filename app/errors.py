"""The domain error hierarchy. Services raise these; they know nothing of HTTP.

Each error carries a stable ``code`` and a message a client may read; ``app.api.errors`` holds the
one table that turns them into HTTP responses.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    code = "invalid_input"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class NotFound(DomainError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PredictionNotFound(NotFound):
    code = "prediction_not_found"


class ModelNotReady(DomainError):
    code = "model_not_ready"


class ModelSuspended(DomainError):
    """An admin stopped the model (the stop switch): no prediction until it is resumed."""

    code = "suspended"


class RegistryUnavailable(DomainError):
    code = "registry_unavailable"


class Conflict(DomainError):
    code = "conflict"


class Overloaded(DomainError):
    code = "overloaded"


class DeadlineExceeded(DomainError):
    code = "deadline_exceeded"


class PromotionRefused(Conflict):
    """The promotion policy (or a precondition such as 'a previous version exists') said no."""

    code = "promotion_refused"


class ProductionChanged(PromotionRefused):
    """Another promotion or rollback moved Production after this one was decided."""

    code = "production_changed"


class Unauthenticated(DomainError):
    code = "unauthenticated"

    def __init__(self, message: str, scheme: str = "Bearer") -> None:
        super().__init__(message)
        self.scheme = scheme


class PermissionDenied(DomainError):
    code = "permission_denied"


class PredictionLogFull(DomainError):
    """The spool is at its size limit: answering would mean not recording (503, Retry-After)."""

    code = "prediction_log_full"


class DatabaseUnavailable(DomainError):
    code = "database_unavailable"


class NoDataInWindow(NotFound):
    code = "no_data_in_window"


class ReferenceUnavailable(Conflict):
    code = "reference_unavailable"


class ExplanationUnavailable(Conflict):
    """The version that made a prediction cannot be explained exactly (not a tree ensemble)."""

    code = "explanation_unavailable"


class ProposalNotFound(NotFound):
    code = "proposal_not_found"


class ProposalDecided(Conflict):
    """The retraining proposal was already approved or rejected: a decision is taken once."""

    code = "proposal_decided"


class NotEnoughFeedback(Conflict):
    """Retraining needs more logged predictions with feedback than the window holds."""

    code = "not_enough_feedback"
