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


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` UUIDv7s of this millisecond: one read of the random source and no per-id
    validation (a 100-item request made them a tenth of the event loop's time one by one)."""
    millis = time.time_ns() // 1_000_000
    head = (millis << 80) | _VERSION_7
    rand = os.urandom(10 * count)
    made = []
    for i in range(0, 10 * count, 10):
        bits = int.from_bytes(rand[i:i + 10])
        made.append(_uuid((head | ((bits >> 62) & 0xFFF) << 64) | _VARIANT_RFC | (bits & _LOW_62)))
    return made


_LOW_62 = 2**62 - 1
_UNKNOWN = uuid.SafeUUID.unknown  # an enum member's lookup through its class is slow on 3.11


def _uuid(value: int) -> uuid.UUID:
    # What uuid.UUID(int=value) builds, without re-checking a value made valid above
    # (CPython 3.12+ has the same shortcut as UUID._from_int).
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", _UNKNOWN)
    return made
