"""Client authentication for prediction routes: optional API keys, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.security import APIKeyHeader

from app.errors import PermissionDenied, Unauthenticated

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Client API key")


def key_matches(candidate: str, keys) -> bool:
    """True if ``candidate`` equals one of the SecretStr ``keys``; every key is compared."""
    supplied = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.get_secret_value().encode())
    return matched


async def require_client_key(request: Request) -> None:
    """Enforced only when FS_API_KEYS is set; the key itself is never logged or echoed."""
    keys = request.app.state.container.settings.security.api_keys
    if not keys:
        return
    supplied = await _api_key_header(request)
    if not supplied:
        raise Unauthenticated("an API key is required (X-API-Key header)", scheme="ApiKey")
    if not key_matches(supplied, keys):
        raise PermissionDenied("the API key is not valid")
