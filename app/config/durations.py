"""Durations as people write them (``90d``, ``24h``, ``30m``, ``10s``, ``2w``): one grammar for the
settings, the API's ``?last=`` and the CLI's ``--older-than``.

``parse_duration`` gives a ``timedelta``; ``Duration`` is the settings type, parsed once when the
settings load. It stays the text it was written as (a ``str``), so messages and the generated
configuration reference show ``24h``, and carries ``.timedelta`` and ``.seconds``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Far enough back for any window, and well inside datetime's range when subtracted from now.
MAX_DURATION = timedelta(weeks=9999)
_GRAMMAR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
HELP = "a number and a unit (s, m, h, d, w), e.g. 90d, 24h, 30m"


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str, *, allow_zero: bool = False, bare_seconds: bool = False) -> timedelta:
    """``<number><s|m|h|d|w>`` -> timedelta. Positive unless ``allow_zero``; a number without a
    unit is seconds only with ``bare_seconds``. Raises ``InvalidDuration`` (a ``ValueError``)."""
    match = _GRAMMAR.match(text) if isinstance(text, str) else None
    if match is None or (not match.group(2) and not bare_seconds):
        raise InvalidDuration(f"expected {HELP}")
    amount = float(match.group(1))
    if amount == 0 and not allow_zero:
        raise InvalidDuration(f"expected a positive duration: {HELP}")
    seconds = amount * UNIT_SECONDS[match.group(2) or "s"]
    # Checked before building the timedelta: past its range (or inf) it raises OverflowError.
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidDuration(f"a duration is at most {MAX_DURATION.days // 7} weeks")
    return timedelta(seconds=seconds)


class Duration(str):
    """A positive duration setting: the text as written, parsed once."""

    _span: timedelta

    def __new__(cls, text: str) -> Duration:
        span = parse_duration(text)
        self = super().__new__(cls, text.strip())
        self._span = span
        return self

    @property
    def timedelta(self) -> timedelta:
        return self._span

    @property
    def seconds(self) -> float:
        return self._span.total_seconds()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: Any) -> Any:
        return {"type": "string", "pattern": _GRAMMAR.pattern, "examples": ["24h"]}
