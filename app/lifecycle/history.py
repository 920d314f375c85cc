"""The Production history: the versions our moves made Production, oldest first.

Kept as a JSON list in a registered model tag; rollback walks it back like an undo stack. Pure
functions, so the undo rules are tested without a registry.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

HISTORY_TAG = "fs.production_history"
HISTORY_MAX = 50  # bounded so the tag stays small


def history_of(tags: dict[str, str]) -> list[str]:
    try:
        history = json.loads(tags.get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        log.warning("ignoring an unreadable %s tag", HISTORY_TAG)
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def after_promotion(history: list[str], from_version: str | None, to_version: str) -> list[str]:
    """Push the new Production version; first the replaced one if a move outside our API
    (the plain MLflow client) put it there."""
    history = list(history)
    if from_version is not None and (not history or history[-1] != from_version):
        history.append(from_version)
    history.append(to_version)
    return history[-HISTORY_MAX:]


def rollback_target(history: list[str], current: str | None) -> str | None:
    """The version before ``current``: the top of the history, or the one under it when
    ``current`` is the top."""
    trail = history[:-1] if history and history[-1] == current else history
    return next((v for v in reversed(trail) if v != current), None)


def after_rollback(history: list[str], current: str | None) -> list[str]:
    """Pop ``current`` (and any copies of it underneath) so the next rollback goes further back."""
    history = list(history)
    while history and history[-1] == current:
        history.pop()
    return history
