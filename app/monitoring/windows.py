"""Time windows from query parameters: ``?start=&end=`` or ``?last=24h``.

Durations have one grammar, ``app.config.durations``; a ``Duration`` arrives already parsed (a
setting, or a query parameter FastAPI validated), and plain text (the CLI's ``--last``) is parsed
here with the same grammar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.config import Duration, InvalidDuration
from app.errors import InvalidInput

Span = Duration | timedelta | str


def span_of(value: Span, field: str = "last") -> timedelta:
    """The timedelta of a duration; text that is not one is ``InvalidInput`` naming ``field``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, Duration):
        return value.timedelta
    try:
        return Duration(value).timedelta
    except (InvalidDuration, OverflowError):  # OverflowError: past timedelta's range
        raise InvalidInput(
            f"{field} must be a positive duration such as 30m, 24h or 7d",
            [{"field": field, "type": "duration", "message": "expected <number><s|m|h|d|w>"}],
        ) from None


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: Span, now: datetime | None = None) -> TimeWindow:
        """The window that ends now and spans ``span``."""
        now = now or datetime.now(UTC)
        return cls(now - span_of(span), now)

    @classmethod
    def resolve(
        cls, start: datetime | None, end: datetime | None, last: Span | None, default_last: Span,
        now: datetime | None = None,
    ) -> TimeWindow:
        now = now or datetime.now(UTC)
        if last is not None and (start is not None or end is not None):
            raise InvalidInput(
                "give either last or start/end, not both",
                [{"field": "last", "type": "conflict", "message": "not with start/end"}],
            )
        if start is None and end is None:
            return cls.last(default_last if last is None else last, now)
        end = _aware(end) if end is not None else now
        if start is None:
            try:
                start = end - span_of(default_last)
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
