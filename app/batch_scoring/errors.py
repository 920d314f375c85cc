"""The error a bad input file gives: it names the column and the row, never the value."""

from __future__ import annotations

from app.errors import InvalidInput


class BatchInputError(InvalidInput):
    """The input file cannot be scored: a missing column, a bad value, a malformed file."""

    code = "invalid_batch_input"
