"""The request guard: who is asking is checked from the headers before the app reads a byte of
the body, and no body may be larger than the server's `max_request_size`.

A pure ASGI middleware (Starlette's BaseHTTPMiddleware would buffer). Each HTTP request, by its
method and path, needs
- under /api/, and /metrics: a bearer key (401 with deps.verify_bearer's messages), handed on
  to deps.api_key in the request's state; except the signed URLs, whose signature is checked here instead (a
  token's callback URL: 401, a packet upload URL: 403), and one open read (GET or HEAD of the
  timezone list). A path no route has needs a key too;
- the API's own description (/openapi.json, /api/docs): a bearer key, a dashboard session or
  `tether dev` on 127.0.0.1 (401, or for the docs page the way to the login form);
- elsewhere (the dashboard): for a page read (GET or HEAD) nothing here, its route asks for a
  session and reads no body; any other method needs a session, a bearer key or `tether dev` on
  127.0.0.1, else it gets the 303 to the login form that its route would send. /login and /logout
  are open to anyone: their forms may hold OPEN_FORM_BYTES.
Then the body's size, only for a request that got this far: a malformed Content-Length is a 400,
one over the limit a 413 at once; a body without one (chunked) is counted as the app reads it,
and the read that passes the limit raises instead of reading on: the answer is a 413 whatever
the app makes of it. Every refusal is JSON {"error": message} except the dashboard's redirect."""

from __future__ import annotations

import re
from enum import Enum

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.app import Tether
from tether.errors import TetherError
from tether.server.api.payloads import UPLOAD_PATH, check_upload
from tether.server.api.waitpoints import check_callback
from tether.server.dashboard.auth import identify
from tether.server.dashboard.web import back, login_redirect
from tether.server.deps import VERIFIED_KEY, verify_bearer
from tether.server.errors import ApiError, error_response, status_for

OPEN_FORM_BYTES = 64 * 1024  # /login and /logout: what anyone may send
READS = frozenset({"GET", "HEAD"})
OPEN_API_READS = frozenset({"/api/v1/timezones"})
API_DOCS = frozenset({"/openapi.json", "/api/docs"})
METRICS = "/metrics"  # Prometheus' scrape: a bearer key, as for the API
OPEN_FORMS = frozenset({"/login", "/logout"})
CALLBACK = re.compile(r"/api/v1/waitpoints/tokens/([^/]+)/callback/([^/]+)")
LIMIT_HINT = "(tether serve --max-request-size, or TETHER_MAX_REQUEST_SIZE)"
FORM_HINT = "(a login or logout form)"


class Access(Enum):
    """What a request must show before its body is read."""

    KEY = "a bearer key"
    CALLBACK = "a token's callback signature"
    UPLOAD = "a packet upload signature"
    SESSION = "a dashboard session, a bearer key or tether dev on 127.0.0.1"
    DOCS = "the same, for the API's description"
    OPEN = "nothing (its route reads no body, or checks itself)"
    OPEN_FORM = "nothing, and a small body"


def access_of(method: str, path: str) -> Access:
    if path == METRICS:
        return Access.KEY
    if method in READS and path in API_DOCS:
        return Access.DOCS
    if path == "/api" or path.startswith("/api/"):
        if method in READS and path in OPEN_API_READS:
            return Access.OPEN
        if method == "POST" and CALLBACK.fullmatch(path):
            return Access.CALLBACK
        if method == "PUT" and path.startswith(UPLOAD_PATH):
            return Access.UPLOAD
        return Access.KEY
    if method in READS:
        return Access.OPEN
    return Access.OPEN_FORM if path in OPEN_FORMS else Access.SESSION


def route_path(scope: Scope) -> str:
    """The path the routes match: without the root path the server may be mounted at (as
    Starlette's router takes it off)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root):]
    return rest if not rest or rest.startswith("/") else path


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, None without one; ValueError when it is not one number."""
    values = {value.strip() for name, value in scope["headers"] if name.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not next(iter(values)).isdigit():
        shown = ", ".join(sorted(v.decode("latin-1") for v in values))
        raise ValueError(f"malformed Content-Length {shown!r}: it must be one number of bytes")
    return int(values.pop())


class BodyTooLarge(HTTPException):
    """Raised by the counted `receive` once the body passes the limit. An HTTPException, so that
    FastAPI passes it on as a 413 instead of "There was an error parsing the body"."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


def too_large(size: str, limit: int, hint: str) -> str:
    return f"request body of {size} bytes is over the limit of {limit} bytes {hint}"


class RequestGuard:
    def __init__(self, app: ASGIApp, tether: Tether, max_request_size: int) -> None:
        self.app = app
        self.tether = tether
        self.max_request_size = max_request_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        access = access_of(scope["method"], path)
        limit, hint = self.max_request_size, LIMIT_HINT
        if access is Access.OPEN_FORM:
            limit, hint = min(limit, OPEN_FORM_BYTES), FORM_HINT
        refusal = await self.authenticate(access, scope, path)
        if refusal is None:
            refusal = check_length(scope, limit, hint)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await LimitedBody(scope, receive, send, limit, hint).serve(self.app)

    async def authenticate(self, access: Access, scope: Scope, path: str) -> Response | None:
        """None if the request may go on, else the answer that refuses it. Storage is read in a
        thread (a key lookup may also note when the key was last used), as the dependency did."""
        if access in (Access.OPEN, Access.OPEN_FORM):
            return None
        request = Request(scope)
        try:
            if access is Access.KEY:
                header = request.headers.get("authorization", "")
                key = await run_in_threadpool(verify_bearer, self.tether, header)
                scope.setdefault("state", {})[VERIFIED_KEY] = key
            elif access is Access.SESSION:
                if await run_in_threadpool(identify, self.tether, request) is None:
                    # as the form's route would answer: log in, then back to the form's page
                    return login_redirect(back(request, "/"))
            elif access is Access.DOCS:
                if await run_in_threadpool(identify, self.tether, request) is None:
                    if path == "/api/docs":
                        return login_redirect("/api/docs")
                    return error_response(401, "The API's description needs a key: send "
                                               "'Authorization: Bearer <key>', or log in to the "
                                               "dashboard")
            else:
                await run_in_threadpool(self.check_signature, access, path, request)
        except ApiError as exc:
            return error_response(exc.status_code, exc.message)
        except TetherError as exc:  # the database is unreachable: 503
            return error_response(status_for(exc), str(exc))
        return None

    def check_signature(self, access: Access, path: str, request: Request) -> None:
        if access is Access.CALLBACK:
            match = CALLBACK.fullmatch(path)
            assert match is not None
            check_callback(self.tether, match[1], match[2])
        else:
            query = request.query_params
            check_upload(self.tether, path[len(UPLOAD_PATH):], query.get("expires", ""),
                         query.get("signature", ""))


def check_length(scope: Scope, limit: int, hint: str) -> Response | None:
    """A 400 for a malformed Content-Length, a 413 for one over `limit`, else None."""
    try:
        size = declared_length(scope)
    except ValueError as exc:
        return error_response(400, str(exc))
    if size is not None and size > limit:
        return error_response(413, too_large(str(size), limit, hint))
    return None


class LimitedBody:
    """One request on its way to the app, whose body may hold at most `limit` bytes."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int, hint: str) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.limit = limit
        self.hint = hint
        self.count = 0
        self.over = False
        self.started = False  # the app's answer began before the body passed the limit
        self.refused = False  # the 413 was sent in place of the app's answer

    async def serve(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.counted, self.answer)
        except BodyTooLarge:
            if self.started:
                raise
            if not self.refused:
                await self.refuse()

    async def counted(self) -> Message:
        """The app's `receive`: raises instead of reading past the limit."""
        if self.over:
            raise BodyTooLarge(self.message())
        message = await self.receive()
        if message["type"] == "http.request":
            self.count += len(message.get("body", b""))
            if self.count > self.limit:
                self.over = True
                raise BodyTooLarge(self.message())
        return message

    async def answer(self, message: Message) -> None:
        """The app's `send`: once the body passed the limit, the answer is the 413, whatever the
        app made of the error."""
        if self.refused:
            return
        if message["type"] == "http.response.start":
            if self.over:
                await self.refuse()
                return
            self.started = True
        await self.send(message)

    def message(self) -> str:
        return too_large(f"at least {self.count}", self.limit, self.hint)

    async def refuse(self) -> None:
        self.refused = True
        await error_response(413, self.message())(self.scope, self.receive, self.send)
