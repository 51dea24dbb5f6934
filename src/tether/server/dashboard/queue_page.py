"""/queues/keys?name=Q: one queue's limits, its paused keys (each with a Resume button) and
the keys with the most runs ready (app.queues)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tether.errors import TetherError
from tether.server.dashboard.auth import FormViewer, PageViewer
from tether.server.dashboard.web import error_page, new_router, page, redirect, tether_of

router = new_router()

TOP_KEYS = 20  # the keys shown, deepest first


def _url(name: str) -> str:
    return "/queues/keys?name=" + quote(name, safe="")


@router.get("/queues/keys")
def queue_keys_page(request: Request, viewer: PageViewer,
                    name: Annotated[str, Query(max_length=256)]) -> HTMLResponse:
    tether = tether_of(request)
    queue = next((q for q in tether.queues.list() if q.name == name), None)
    if queue is None:
        return error_page(request, 404, "Queue not found", f"No queue named {name!r}.")
    return page(request, "queue_keys.html", {
        "queue": queue, "paused": tether.queues.paused_keys(name),
        "depths": tether.queues.key_depths(name, TOP_KEYS), "top": TOP_KEYS, "nav": "queues"})


@router.post("/queues/resume-key")
def resume_key(request: Request, viewer: FormViewer, queue: Annotated[str, Form()],
               key: Annotated[str, Form()] = "") -> RedirectResponse:
    try:
        resumed = tether_of(request).queues.resume_key(queue, key)
    except TetherError as exc:
        return redirect(_url(queue), str(exc), error=True)
    shown = key or "(no key)"
    if not resumed:
        return redirect(_url(queue), f"Key {shown} was not paused.", error=True)
    return redirect(_url(queue), f"Key {shown} of queue {queue} resumed: its runs may start now.")
