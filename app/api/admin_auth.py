"""Authentication, compared in constant time; secrets are never logged, returned or stored.

- Admin routes: named bearer tokens (``FS_ADMIN_TOKENS``). No token -> 401, a token that matches
  none -> 403. The caller is known by the token's *name*, which is what audits record.
- Review routes: a reviewer token (``FS_REVIEWER_TOKENS``, same grammar) or an admin token, the
  same 401/403; reviews record the name.
- Client routes: optional client API keys (``FS_API_KEYS``, ``X-API-Key``); off when unset.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.api.deps import SettingsDep, container_of
from app.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An admin token from FS_ADMIN_TOKENS")
_KEY_SCHEME = "APIKeyHeader"
_api_key_header = APIKeyHeader(
    name="X-API-Key", scheme_name=_KEY_SCHEME, auto_error=False, description="Client API key"
)


def match_token(tokens: Mapping[str, SecretStr], presented: str) -> str | None:
    """The name of the token equal to ``presented``; every token is compared (no early exit)."""
    given = presented.encode()
    found = None
    for name, secret in tokens.items():
        if hmac.compare_digest(secret.get_secret_value().encode(), given):
            found = name
    return found


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("an admin bearer token is required")
    name = match_token(settings.admin.admin_tokens, credentials.credentials)
    if name is None:
        log.warning("admin request with an unknown token refused")
        raise PermissionDenied("this token may not use the admin API")
    return name


AdminDep = Annotated[str, Depends(require_admin)]

_reviewer_bearer = HTTPBearer(
    auto_error=False, scheme_name="ReviewerBearer",
    description="A reviewer token from FS_REVIEWER_TOKENS, or an admin token",
)


async def require_reviewer(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_reviewer_bearer)],
) -> str:
    """The reviewer's name as reviews record it: a reviewer token's name, ``admin:<name>`` for an
    admin token (reviewer names cannot hold ':', so the two never collide)."""
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("a reviewer or admin bearer token is required")
    # Both lists are always compared: the time taken says nothing about which one matched.
    reviewer = match_token(settings.oversight.reviewer_tokens, credentials.credentials)
    admin = match_token(settings.admin.admin_tokens, credentials.credentials)
    if reviewer is not None:
        return reviewer
    if admin is not None:
        return f"admin:{admin}"
    log.warning("review request with an unknown token refused")
    raise PermissionDenied("this token may not review predictions")


ReviewerDep = Annotated[str, Depends(require_reviewer)]


def key_matches(candidate: str, keys: Iterable[SecretStr]) -> bool:
    """True if ``candidate`` equals one of the SecretStr ``keys``; every key is compared."""
    supplied = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.get_secret_value().encode())
    return matched


async def require_client_key(
    request: Request, supplied: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """Enforced only when FS_API_KEYS is set; the key itself is never logged or echoed.

    Guards every client route of the data: predictions on all three protocols, their records and
    feedback, drift (the JSON and the HTML page: the same data), performance, model health and
    the model reads. Probes stay open (``/health/*``, ``/ping``, ``/health``, ``/v2/health/*``,
    ``/metrics``), as do the protocol metadata routes (``/version``, ``/v2``, V2 model metadata
    and readiness: the signature, no data). Admin routes take an admin token instead.
    """
    _check_client_key(container_of(request).settings.security.api_keys, supplied)


# The prediction routes call check_client_key in their body rather than depending on it: no
# dependency resolution per request on the hot path. This documents the same requirement.
CLIENT_KEY_SECURITY: dict[str, Any] = {"security": [{_KEY_SCHEME: []}]}


def check_client_key(request: Request) -> None:
    """``require_client_key`` as a plain call: the same check and errors."""
    keys = container_of(request).settings.security.api_keys
    if keys:
        _check_client_key(keys, request.headers.get(_api_key_header.model.name))


def _check_client_key(keys: list[SecretStr], supplied: str | None) -> None:
    if not keys:
        return
    if not supplied:
        raise Unauthenticated("an API key is required (X-API-Key header)", scheme="ApiKey")
    if not key_matches(supplied, keys):
        raise PermissionDenied("the API key is not valid")


def document_client_key(app: FastAPI, required: bool) -> None:
    """The OpenAPI document asks for the client key only when FS_API_KEYS is set: a schema
    requiring a header the service does not check misleads clients and fuzzers alike."""
    if required:
        return
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's cached document: the edit below is idempotent
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "security" in operation:
                    kept = [r for r in operation["security"] if _KEY_SCHEME not in r]
                    if kept:
                        operation["security"] = kept
                    else:
                        del operation["security"]
        schema.get("components", {}).get("securitySchemes", {}).pop(_KEY_SCHEME, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
