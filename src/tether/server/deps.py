"""FastAPI dependencies shared by the API and the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tether.app import Tether
from tether.keys import ApiKey
from tether.server.errors import ApiError


def get_tether(request: Request) -> Tether:
    tether: Tether = request.app.state.tether
    return tether


TetherDep = Annotated[Tether, Depends(get_tether)]


def api_key(request: Request, tether: TetherDep) -> ApiKey:
    """Bearer auth for every API route: 401 before anything is read or written."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>' "
                            "(create one with: tether keys create)")
    key = tether.keys.verify(secret.strip())
    if key is None:
        raise ApiError(401, "Invalid API key: it is unknown or was revoked")
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]
