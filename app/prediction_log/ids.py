"""Record ids that carry their creation time: UUID version 7 (RFC 9562).

A prediction answered by one replica sits in that replica's spool until its drainer writes it, so
another replica may be asked about it before the database has it. Because the id says when it was
made, a reader can tell "made a moment ago somewhere, wait for the drain" from "old or never
made, 404 now" without asking anyone (``PredictionLog.get``).
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62


def new_id(at: float | None = None) -> uuid.UUID:
    """A UUIDv7 made now (or at Unix time ``at``): 48 bits of milliseconds, then 74 random bits, as
    Python 3.14's ``uuid.uuid7`` lays them out (ids of one millisecond need no order here)."""
    millis = time.time_ns() // 1_000_000 if at is None else int(at * 1000)
    rand = int.from_bytes(os.urandom(10))
    value = (millis << 80) | _VERSION_7 | ((rand >> 62) & 0xFFF) << 64 | _VARIANT_RFC | (rand & (2**62 - 1))
    return uuid.UUID(int=value)


def created_at(record_id: uuid.UUID) -> float | None:
    """Unix time (seconds) a UUIDv7 was made; None for any other kind of uuid."""
    if record_id.version != 7 or record_id.variant != uuid.RFC_4122:
        return None
    return (record_id.int >> 80) / 1000.0
