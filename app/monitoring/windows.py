"""Time windows from query parameters: ``?start=&end=`` or ``?last=24h``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.errors import InvalidInput

# At most 4 digits: 9999w is ~190 years, far enough back without leaving datetime's range.
DURATION_PATTERN = r"^\s*0*([1-9][0-9]{0,3})\s*([smhdw])\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, field: str = "last") -> timedelta:
    """``30s``, ``15m``, ``24h``, ``30d``, ``2w`` -> timedelta (positive)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            f"{field} must be a positive duration such as 30m, 24h or 7d",
            [{"field": field, "type": "duration", "message": "expected <number><s|m|h|d|w>"}],
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


def is_duration(text: str) -> bool:
    match = _DURATION.match(text or "")
    return bool(match) and int(match.group(1)) > 0


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @classmethod
    def resolve(
        cls, start: datetime | None, end: datetime | None, last: str | None, default_last: str,
        now: datetime | None = None,
    ) -> TimeWindow:
        now = now or datetime.now(UTC)
        if last is not None and (start is not None or end is not None):
            raise InvalidInput(
                "give either last or start/end, not both",
                [{"field": "last", "type": "conflict", "message": "not with start/end"}],
            )
        if start is None and end is None:
            span = parse_duration(last or default_last)
            return cls(now - span, now)
        end = _aware(end) if end is not None else now
        if start is None:
            try:
                start = end - parse_duration(default_last)
            except OverflowError:
                raise InvalidInput(
                    "end is too early for the default window; give start as well",
                    [{"field": "end", "type": "range", "message": "too early"}],
                ) from None
        start = _aware(start)
        if start >= end:
            raise InvalidInput(
                "start must be before end",
                [{"field": "start", "type": "range", "message": "must be before end"}],
            )
        return cls(start, end)


def _aware(value: datetime) -> datetime:
    """Naive means UTC; everything is compared in UTC (SQLite stores UTC text without an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
