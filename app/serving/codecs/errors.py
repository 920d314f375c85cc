"""Errors of the protocol adapters. Still domain errors: each router maps them to its wire shape."""

from __future__ import annotations

from typing import Any

from app.errors import InvalidInput


class ProtocolInputError(InvalidInput):
    """A payload the protocol cannot accept.

    ``mlflow_code`` is the MLflow error code (``BAD_REQUEST`` or ``INVALID_PARAMETER_VALUE``) that
    MLflow's own scoring server gives for the same kind of input.
    """

    def __init__(
        self,
        message: str,
        mlflow_code: str = "BAD_REQUEST",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, details)
        self.mlflow_code = mlflow_code


class UnsupportedContentType(InvalidInput):
    code = "unsupported_content_type"
