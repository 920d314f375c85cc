"""Authentication, compared in constant time; secrets are never logged, returned or stored.

- Admin routes: named bearer tokens (``FS_ADMIN_TOKENS``). No token -> 401, a token that matches
  none -> 403. The caller is known by the token's *name*, which is what audits record.
- Prediction routes: optional client API keys (``FS_API_KEYS``, ``X-API-Key``); off when unset.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.deps import ContainerDep
from app.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An admin token from FS_ADMIN_TOKENS")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Client API key")


def match_token(tokens: dict, presented: str) -> str | None:
    """The name of the token equal to ``presented``; every token is compared (no early exit)."""
    given = presented.encode()
    found = None
    for name, secret in tokens.items():
        if hmac.compare_digest(secret.get_secret_value().encode(), given):
            found = name
    return found


def require_admin(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("an admin bearer token is required")
    name = match_token(container.settings.admin.admin_tokens, credentials.credentials)
    if name is None:
        log.warning("admin request with an unknown token refused")
        raise PermissionDenied("this token may not use the admin API")
    return name


AdminDep = Annotated[str, Depends(require_admin)]


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
