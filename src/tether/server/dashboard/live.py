"""Live updates over server-sent events. Each stream polls the database (so it sees what other
processes, such as workers, write) every POLL seconds, and sends the re-rendered HTML fragment when
a fingerprint of what the page shows changed; a few lines of script swap it in.

A stream ends when the client goes away, when the server shuts down (uvicorn's `should_exit`),
and after STREAM_SECONDS (the browser reconnects by itself, sending the last fingerprint as
Last-Event-ID, so nothing is sent twice and nothing is missed)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from tether.errors import RunNotFound
from tether.server.dashboard import run_detail, runs_list
from tether.server.dashboard.auth import csrf_token, stream_viewer
from tether.server.dashboard.web import new_router, off_loop, tether_of

router = new_router()

POLL = 0.25
STREAM_SECONDS = 30.0
PING_SECONDS = 10.0
RETRY_MS = 500
SLOWDOWN = 4  # a poll that took t seconds waits at least 4t before the next one

Poll = Callable[[], tuple[str, Callable[[], str]]]  # -> (fingerprint, render the fragment)

_servers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object | None] = (
    weakref.WeakKeyDictionary())


def _server() -> object | None:
    """The uvicorn Server running this event loop (its main task's `serve` coroutine), if any."""
    loop = asyncio.get_running_loop()
    if loop not in _servers:
        found = None
        for task in asyncio.all_tasks(loop):
            frame = getattr(task.get_coro(), "cr_frame", None)
            owner = frame.f_locals.get("self") if frame is not None else None
            if owner is not None and hasattr(owner, "should_exit") and hasattr(owner, "server_state"):
                found = owner
                break
        _servers[loop] = found
    return _servers[loop]


def shutting_down(request: Request) -> bool:
    if getattr(request.app.state, "shutting_down", False):
        return True
    server = _server()
    return bool(server is not None and getattr(server, "should_exit", False))


def message(fingerprint: str, html: str) -> str:
    data = "".join(f"data: {line}\n" for line in html.replace("\r", "").split("\n"))
    return f"id: {fingerprint}\nevent: swap\n{data}\n"


async def _ended(request: Request, deadline: float) -> bool:
    return (time.monotonic() > deadline or shutting_down(request)
            or await request.is_disconnected())


async def stream(request: Request, since: str, poll: Poll) -> AsyncIterator[str]:
    last = request.headers.get("last-event-id") or since
    deadline = time.monotonic() + STREAM_SECONDS
    pinged = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    while not await _ended(request, deadline):
        started = time.monotonic()
        fingerprint, html = await asyncio.to_thread(_changed, poll, last)
        spent = time.monotonic() - started
        if html is not None:
            last = fingerprint
            pinged = time.monotonic()
            yield message(fingerprint, html)
        elif time.monotonic() - pinged > PING_SECONDS:
            pinged = time.monotonic()
            yield ": ping\n\n"
        await asyncio.sleep(max(POLL, SLOWDOWN * spent))  # a heavy page polls less often


def _changed(poll: Poll, last: str) -> tuple[str, str | None]:
    fingerprint, render = poll()
    return fingerprint, (render() if fingerprint != last else None)


def event_stream(request: Request, since: str, poll: Poll) -> StreamingResponse:
    return StreamingResponse(stream(request, since, poll), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def unauthorized() -> Response:
    return PlainTextResponse("Log in first: the session is missing or expired.", 401)


Q = Annotated[str, Query()]


@router.get("/live/runs")
async def live_runs(request: Request, view: Q = "runs", since: Q = "", status: Q = "", task: Q = "",
                    tag: Q = "", queue: Q = "", range: Q = "", after: Q = "", before: Q = "",
                    cursor: Q = "") -> Response:
    tether = tether_of(request)
    if await off_loop(tether, lambda: stream_viewer(request)) is None:
        return unauthorized()
    kind = "failed" if view == "failed" else "runs"
    q = runs_list.make_query(status, task, tag, queue, range, after, before, cursor)

    def poll() -> tuple[str, Callable[[], str]]:
        found = runs_list.load(tether, q, kind)
        return found.fingerprint, lambda: runs_list.rows_html(found.runs, kind)

    return event_stream(request, since, poll)


@router.get("/live/runs/{run_id}")
async def live_run(request: Request, run_id: str, since: Q = "") -> Response:
    tether = tether_of(request)
    if await off_loop(tether, lambda: stream_viewer(request)) is None:
        return unauthorized()
    csrf = await off_loop(tether, lambda: csrf_token(tether, request))
    try:
        await off_loop(tether, lambda: run_detail.load(tether, run_id))
    except RunNotFound as exc:
        return PlainTextResponse(str(exc), 404)

    def poll() -> tuple[str, Callable[[], str]]:
        view = run_detail.load(tether, run_id)
        return view.fingerprint, lambda: run_detail.live_html(view, csrf)

    return event_stream(request, since, poll)
