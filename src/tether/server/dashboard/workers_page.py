"""/workers: every worker seen in the last 24 hours (or all), its state, what it holds and how
often its event loop stalled; the rows update live (/live/workers)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from tether.server.dashboard.auth import PageViewer, stream_viewer
from tether.server.dashboard.live import event_stream, unauthorized
from tether.server.dashboard.web import new_router, off_loop, page, render_fragment, tether_of
from tether.workers import WorkerInfo

router = new_router()

AllQuery = Annotated[str, Query(alias="all")]


def fingerprint(workers: list[WorkerInfo]) -> str:
    text = json.dumps([[w.id, w.state, w.running, w.stalls, w.last_seen_at.timestamp()]
                       for w in workers])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def rows_html(workers: list[WorkerInfo]) -> str:
    return render_fragment("_workers_rows.html", workers=workers, now=time.time())


def _counts(workers: list[WorkerInfo]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in workers:
        counts[w.state] = counts.get(w.state, 0) + 1
    return counts


@router.get("/workers")
def workers_page(request: Request, viewer: PageViewer, show_all: AllQuery = "") -> HTMLResponse:
    everything = show_all not in ("", "0", "false")
    found = tether_of(request).workers.list(all=everything)
    live = f"/live/workers?all={int(everything)}&since={fingerprint(found)}"
    return page(request, "workers.html",
                {"rows": rows_html(found), "counts": _counts(found), "all": everything,
                 "live_url": live, "nav": "workers"})


@router.get("/live/workers")
async def live_workers(request: Request, show_all: AllQuery = "", since: str = "") -> Response:
    tether = tether_of(request)
    if await off_loop(tether, lambda: stream_viewer(request)) is None:
        return unauthorized()
    everything = show_all not in ("", "0", "false")

    def poll() -> tuple[str, Callable[[], str]]:
        found = tether.workers.list(all=everything)
        return fingerprint(found), lambda: rows_html(found)

    return event_stream(request, since, poll)
