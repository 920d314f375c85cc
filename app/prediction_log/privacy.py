"""Subject ids (employees, teams) are stored only as a keyed HMAC, never raw."""

from __future__ import annotations

import hashlib
import hmac


def hash_subject(key: bytes, subject_id: str | None) -> str | None:
    if subject_id is None:
        return None
    return hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()
