"""Who is looking: a session cookie made at /login from an API key, a bearer key, or `tether dev`
on 127.0.0.1. And CSRF: every POST carries a token tied to a per-session nonce cookie.

The session cookie holds the key id and an expiry, signed with the server's HMAC secret
(server/signing.py); each request checks again that the key was not revoked. The CSRF token is
the signature of a random nonce kept in its own HttpOnly cookie, renewed at login and logout."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from tether.app import Tether
from tether.keys import ApiKey
from tether.server.dashboard.web import (
    DashboardError,
    LoginRequired,
    back,
    local_url,
    new_router,
    off_loop,
    page,
    tether_of,
)
from tether.server.signing import sign, verify

SESSION_COOKIE = "tether_session"
NONCE_COOKIE = "tether_csrf"
SESSION_SECONDS = 12 * 3600
SESSION_PURPOSE = "dashboard-session"
CSRF_PURPOSE = "dashboard-csrf"
LOOPBACK = frozenset({"127.0.0.1", "::1"})

router = new_router()


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: `name` is the API key's name ("dev" under `tether dev`)."""

    name: str
    csrf: str  # the token that the page's forms send back
    key_id: str | None = None
    authenticated: bool = True
    can_logout: bool = False


# -- sessions -----------------------------------------------------------------------------------
def session_cookie(tether: Tether, key_id: str, now: float) -> str:
    value = f"{key_id}:{int(now + SESSION_SECONDS)}"
    return f"{value}:{sign(tether, SESSION_PURPOSE, value)}"


def _active_key(tether: Tether, key_id: str) -> ApiKey | None:
    """The key, unless revoked: a read of the (small) keys table on each request."""
    return next((k for k in tether.keys.list() if k.id == key_id and k.active), None)


def session_key(tether: Tether, cookie: str, now: float) -> ApiKey | None:
    value, _, signature = cookie.rpartition(":")
    key_id, _, expires = value.partition(":")
    if not signature or not expires.isdigit() or int(expires) <= now:
        return None
    if not verify(tether, SESSION_PURPOSE, value, signature):
        return None
    return _active_key(tether, key_id)


def _bearer_key(tether: Tether, request: Request) -> ApiKey | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return tether.keys.verify(secret.strip())


def _dev_local(request: Request) -> bool:
    config = getattr(request.app.state, "config", None)
    host = request.client.host if request.client else ""
    return bool(getattr(config, "dev", False)) and host in LOOPBACK


def identify(tether: Tether, request: Request) -> tuple[str, str | None] | None:
    """(name, key id) of whoever sends the request, or None if nobody we know."""
    cookie = request.cookies.get(SESSION_COOKIE)
    key = session_key(tether, cookie, time.time()) if cookie else None
    if key is not None:
        return key.name, key.id
    key = _bearer_key(tether, request)
    if key is not None:
        return key.name, key.id
    return ("dev", None) if _dev_local(request) else None


# -- CSRF ---------------------------------------------------------------------------------------
def set_cookie(request: Request, response: Response, name: str, value: str,
               max_age: int | None = None) -> None:
    """HttpOnly, SameSite=Lax, and Secure when the page came over HTTPS."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def csrf_token(tether: Tether, request: Request) -> str:
    """The token for this session's forms. Sets a fresh nonce cookie on the page if missing."""
    nonce = request.cookies.get(NONCE_COOKIE)
    if not nonce:
        fresh = nonce = secrets.token_urlsafe(24)
        request.state.on_response = lambda response: set_cookie(request, response, NONCE_COOKIE,
                                                                fresh)
    return sign(tether, CSRF_PURPOSE, nonce)


def renew_nonce(request: Request, response: Response) -> None:
    set_cookie(request, response, NONCE_COOKIE, secrets.token_urlsafe(24))


async def check_csrf(tether: Tether, request: Request) -> None:
    """403 unless the form's csrf_token is the signature of the session's nonce cookie."""
    form = await request.form()
    given = form.get("csrf_token")
    nonce = request.cookies.get(NONCE_COOKIE)
    if not isinstance(given, str) or not nonce:
        raise DashboardError(403, "Forbidden", "The form had no CSRF token, or your session has "
                                               "no CSRF cookie. Reload the page and try again.")
    expected = await off_loop(tether, lambda: sign(tether, CSRF_PURPOSE, nonce))
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise DashboardError(403, "Forbidden", "The form's CSRF token is not valid for this "
                                               "session. Reload the page and try again.")


# -- dependencies -------------------------------------------------------------------------------
def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def page_viewer(request: Request) -> Viewer:
    """For pages: the viewer, or a redirect to /login?next=<this page>."""
    tether = tether_of(request)
    who = identify(tether, request)
    if who is None:
        raise LoginRequired(_here(request))
    viewer = Viewer(who[0], csrf_token(tether, request), who[1],
                    can_logout=SESSION_COOKIE in request.cookies)
    request.state.viewer = viewer
    return viewer


async def form_viewer(request: Request) -> Viewer:
    """For POSTs: the CSRF token first (403, nothing changed), then who it is."""
    tether = tether_of(request)
    await check_csrf(tether, request)
    who = await off_loop(tether, lambda: identify(tether, request))
    if who is None:
        raise LoginRequired(back(request, "/"))  # after logging in, back to the form's page
    viewer = Viewer(who[0], csrf_token(tether, request), who[1])
    request.state.viewer = viewer
    return viewer


def stream_viewer(request: Request) -> str | None:
    """For live-update streams: the viewer's name, or None (the stream answers 401)."""
    who = identify(tether_of(request), request)
    return None if who is None else who[0]


PageViewer = Annotated[Viewer, Depends(page_viewer)]
FormViewer = Annotated[Viewer, Depends(form_viewer)]


# -- routes -------------------------------------------------------------------------------------
def _login_page(request: Request, next_url: str, error: str | None = None,
                status_code: int = 200) -> HTMLResponse:
    tether = tether_of(request)
    request.state.viewer = Viewer("", csrf_token(tether, request), authenticated=False)
    return page(request, "login.html", {"next": next_url, "error": error}, status_code)


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    target = local_url(next)
    if identify(tether_of(request), request) is not None:
        return RedirectResponse(target, 303)
    return _login_page(request, target)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/") -> Response:
    tether = tether_of(request)
    await check_csrf(tether, request)
    target = local_url(next)
    found = await off_loop(tether, lambda: tether.keys.verify(key.strip()))
    if found is None:
        return _login_page(request, target, "That key is unknown or was revoked. Create one with: "
                                            "tether keys create", 401)
    response = RedirectResponse(target, 303)
    set_cookie(request, response, SESSION_COOKIE, session_cookie(tether, found.id, time.time()),
               SESSION_SECONDS)
    renew_nonce(request, response)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await check_csrf(tether_of(request), request)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    renew_nonce(request, response)
    return response
