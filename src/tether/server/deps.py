"""FastAPI dependencies shared by the API and the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from tether.app import Tether
from tether.keys import ApiKey
from tether.server.errors import ApiError

# Where the request guard (server/guard.py) leaves the key it verified, in the request's state.
VERIFIED_KEY = "tether_api_key"


def get_tether(request: Request) -> Tether:
    tether: Tether = request.app.state.tether
    return tether


TetherDep = Annotated[Tether, Depends(get_tether)]


def verify_bearer(tether: Tether, authorization: str) -> ApiKey:
    """The key of an `Authorization: Bearer <key>` header, or a 401: a lookup of its SHA-256."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>' "
                            "(create one with: tether keys create)")
    key = tether.keys.verify(secret.strip())
    if key is None:
        raise ApiError(401, "Invalid API key: it is unknown or was revoked")
    return key


async def api_key(request: Request, tether: TetherDep) -> ApiKey:
    """The caller's key for every API route. The request guard checked it from the headers
    before the body was read (401 before anything is read or written) and hands it over; a
    request that did not pass the guard is checked here."""
    verified = request.scope.get("state", {}).get(VERIFIED_KEY)
    if isinstance(verified, ApiKey):
        return verified
    return await run_in_threadpool(verify_bearer, tether,
                                   request.headers.get("authorization", ""))


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]
