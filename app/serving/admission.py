"""Admission control: a cap on predictions in flight per worker, so overload gets a fast 503
instead of an ever-growing queue whose every request ends up late."""

from __future__ import annotations

from app.errors import Overloaded


class Admission:
    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise Overloaded(f"the service is at capacity ({self.limit} predictions in flight)")
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
