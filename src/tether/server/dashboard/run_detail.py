"""One run: its timeline, payload, output, error, logs, metadata and related runs, with cancel,
replay and retry buttons."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tether.app import Tether
from tether.errors import RunNotFound, TetherError
from tether.models import Run, RunStatus, Token, TraceEvent
from tether.objects.references import full_text, is_reference, reference
from tether.server.dashboard import timeline
from tether.server.dashboard.auth import FormViewer, PageViewer
from tether.server.dashboard.web import new_router, page, redirect, render_fragment, tether_of
from tether.storage.records import RunRecord
from tether.tokens import to_token

router = new_router()

MAX_CHILDREN = 50
VALUES = ("payload", "output", "metadata")  # a run's values the dashboard offers as downloads
RETRYABLE = {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELED}


@dataclass
class RunView:
    run: Run
    record: RunRecord
    trace: list[TraceEvent]
    children: list[Run]
    linked: dict[str, Run]  # children named in the trace, and the parent and root
    token: Token | None  # the token the run waits for, if any
    now: float
    pinned: str | None = None  # the version it waits for, and whether a worker of it runs

    @property
    def stored(self) -> dict[str, int]:
        """The run's values kept in the object store (payload, output, metadata): their sizes,
        shown with a download link instead of megabytes of JSON."""
        return {name: int(reference(text)["size"]) for name in VALUES
                if is_reference(text := getattr(self.record, name))}

    @property
    def fingerprint(self) -> str:
        return view_fingerprint(self)


def _waiting_token(tether: Tether, record: RunRecord, now: float) -> Token | None:
    if record.status != RunStatus.WAITING or not record.waiting_for or record.waiting_for == "sleep":
        return None
    found = tether.storage.get_token(record.waiting_for)  # None: it waits for child runs
    return to_token(found, now) if found is not None else None


def load(tether: Tether, run_id: str) -> RunView:
    storage = tether.storage
    record = storage.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    now = time.time()
    trace = tether.runs.trace(run_id)
    children = tether.runs.children(run_id, limit=MAX_CHILDREN)
    linked = {c.id: c for c in children}
    wanted = [i for i in (*timeline.child_ids(trace), record.parent_id, record.root_id)
              if i and i not in linked]
    linked.update({r.id: r.to_run(light=True)
                   for r in storage.get_runs(list(dict.fromkeys(wanted)))})
    run = record.to_run(light=True)
    pinned = tether.versions.pinned_note(
        run, any(e.kind in ("step", "wait", "child") for e in trace))
    return RunView(run, record, trace, children, linked, _waiting_token(tether, record, now),
                   now, pinned)


def view_fingerprint(view: RunView) -> str:
    """Changes when the run, its trace or a related run changes; every second or few while the
    run is not final, so bars of what is still going grow."""
    run = view.run
    parts = [run.status.value, str(view.record.updated_at), str(len(view.trace))]
    parts += [f"{e.kind}{e.name}{e.outcome}{e.ended_at}" for e in view.trace if e.kind != "log"]
    parts += [f"{r.id}{r.status.value}" for r in view.linked.values()]
    if not run.is_final:
        parts.append(str(int(view.now if run.status == RunStatus.EXECUTING else view.now / 5)))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def live_html(view: RunView, csrf: str) -> str:
    run = view.run
    origin = run.created_at
    context: dict[str, Any] = {
        "run": run, "view": view, "csrf": csrf, "now": view.now,
        "timeline": timeline.build(run, view.trace, view.linked, view.now),
        "logs": timeline.logs(view.trace, origin),
        "transitions": timeline.transitions(view.trace, origin),
        "parent": view.linked.get(run.parent_id or ""),
        "root": view.linked.get(run.root_id or "") if run.root_id != run.parent_id else None,
        "can_cancel": not run.is_final, "can_retry": run.status in RETRYABLE,
        "retry_label": "Retry from the failed step" if run.status == RunStatus.FAILED else "Retry"}
    return render_fragment("_run_live.html", **context)


@router.get("/runs/{run_id}/values/{name}")
def download_value(request: Request, run_id: str, name: str, viewer: PageViewer) -> Response:
    """A run's payload, output or metadata as a JSON file (those kept in the object store are
    read from it)."""
    if name not in VALUES:
        raise RunNotFound(f"{run_id} has no value {name!r}")
    record = tether_of(request).storage.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    text = full_text(getattr(record, name)) or "null"
    return Response(text, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{run_id}-{name}.json"'})


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, viewer: PageViewer) -> HTMLResponse:
    view = load(tether_of(request), run_id)
    live = f"/live/runs/{run_id}?since={view.fingerprint}"
    return page(request, "run.html", {"run": view.run, "body": live_html(view, viewer.csrf),
                                      "live_url": live, "nav": "runs"})


def _act(request: Request, run_id: str, action: Callable[[Tether], str]) -> RedirectResponse:
    tether = tether_of(request)
    try:
        message = action(tether)
    except TetherError as exc:
        return redirect(f"/runs/{run_id}", str(exc), error=True)
    return redirect(f"/runs/{run_id}", message)


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, viewer: FormViewer) -> RedirectResponse:
    def act(tether: Tether) -> str:
        tether.runs.cancel(run_id, f"canceled from the dashboard by {viewer.name}")
        return "Run canceled (with its unfinished child runs)."

    return _act(request, run_id, act)


@router.post("/runs/{run_id}/retry")
def retry(request: Request, run_id: str, viewer: FormViewer) -> RedirectResponse:
    def act(tether: Tether) -> str:
        tether.runs.retry(run_id)
        return "Retrying: one more attempt; completed steps keep their results."

    return _act(request, run_id, act)


@router.post("/runs/{run_id}/replay")
def replay(request: Request, run_id: str, viewer: FormViewer) -> RedirectResponse:
    tether = tether_of(request)
    try:
        handle = tether.runs.replay(run_id)
    except TetherError as exc:
        return redirect(f"/runs/{run_id}", str(exc), error=True)
    return redirect(f"/runs/{handle.id}", f"Replayed {run_id} as this new run.")
