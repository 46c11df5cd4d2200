"""Optional API keys (``LDENSF_API_KEYS``). Each key is its own tenant: the tenant name, derived from
the key by a hash, is part of every session's store key, so a key can neither read nor change another
key's sessions (they answer 404, as unknown ids do). Without keys every caller is tenant ``public``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import Unauthorised
from service.settings import Settings, get_settings

PUBLIC_TENANT = "public"


def tenant_of_key(key: str) -> str:
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:20]


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


async def tenant(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str:
    keys = settings.api_key_list
    if not keys:
        return PUBLIC_TENANT
    key = presented_key(request)
    if key is None:
        raise Unauthorised(
            "missing API key: send it in the 'X-API-Key' header (or 'Authorization: Bearer <key>')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # compare against every key, so the time taken does not tell which prefix matched
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    if not any(matches):
        raise Unauthorised(
            "API key not recognised: check the key you were given (keys are case-sensitive)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant_of_key(key)


Tenant = Annotated[str, Depends(tenant)]
