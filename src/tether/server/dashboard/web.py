"""What every dashboard page shares: the template environment, HTML responses, flash messages,
redirects, and the route class that turns errors into HTML pages instead of JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tether.app import Tether
from tether.errors import TetherError
from tether.server.dashboard import filters
from tether.server.errors import STATUS_OF

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

FLASH_COOKIE = "tether_flash"
T = TypeVar("T")

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True, auto_reload=False)
filters.install(env)


class DashboardError(Exception):
    """An error shown as an HTML page with this status."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


class LoginRequired(Exception):
    """A page was asked for without a session: redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def render_fragment(name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a full page. The viewer (set by the auth dependency) gives the CSRF token."""
    viewer = getattr(request.state, "viewer", None)
    flash = _read_flash(request)
    html = env.get_template(name).render(request=request, viewer=viewer, flash=flash,
                                         csrf=viewer.csrf if viewer else "", **context)
    response = HTMLResponse(html, status_code=status_code,
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    on_response = getattr(request.state, "on_response", None)
    if on_response is not None:
        on_response(response)
    return response


def redirect(url: str, message: str | None = None, error: bool = False) -> RedirectResponse:
    """A 303 to `url` (after a form POST), carrying a one-time message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if message:
        value = quote(("error:" if error else "ok:") + message[:500])
        response.set_cookie(FLASH_COOKIE, value, max_age=60, path="/", httponly=True, samesite="lax")
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = unquote(raw).partition(":")
    return {"kind": "error" if kind == "error" else "ok", "text": text}


def local_url(url: str | None, default: str = "/") -> str:
    """`url` if it is a path on this site (no open redirects), else `default`."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


def back(request: Request, default: str) -> str:
    """Where a form came from (its `Referer`, if on this site), to return there after a POST."""
    referer = request.headers.get("referer", "")
    base = str(request.base_url).rstrip("/")
    if referer.startswith(base + "/"):
        return local_url(referer[len(base):], default)
    return default


def login_redirect(next_url: str) -> RedirectResponse:
    """To the login form, which comes back to `next_url` (a path on this site) afterwards."""
    return RedirectResponse("/login?next=" + quote(next_url, safe="/"), 303)


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", {"title": title, "message": message, "status": status_code},
                status_code)


def status_of(exc: TetherError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


class DashboardRoute(APIRoute):
    """Errors inside a dashboard route become HTML: a login redirect, a 403/404 page, ..."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return login_redirect(exc.next_url)
            except DashboardError as exc:
                return error_page(request, exc.status_code, exc.title, exc.message)
            except TetherError as exc:
                return error_page(request, status_of(exc), type(exc).__name__, str(exc))

        return handle


def new_router() -> APIRouter:
    return APIRouter(include_in_schema=False, route_class=DashboardRoute)


def tether_of(request: Request) -> Tether:
    tether: Tether = request.app.state.tether
    return tether


async def off_loop(tether: Tether, fn: Callable[[], T]) -> T:
    """Call storage from an async handler: in a thread when the backend waits on the network."""
    if tether.storage.io_bound:
        return await asyncio.to_thread(fn)
    return fn()
