"""Admin authentication: named bearer tokens from settings, compared in constant time.

No token -> 401, a token that matches none -> 403. The caller is known by the token's *name*
(what audits record); the secret itself is never logged, returned or stored.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.deps import ContainerDep
from app.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An admin token from FS_ADMIN_TOKENS")


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
