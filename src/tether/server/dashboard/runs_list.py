"""The runs list (`/`) and the dead-letter view (`/failed`): filters, cursor paging newest first,
bulk replay and retry. One indexed `storage.list_runs` per page, no per-row queries."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tether.app import Tether
from tether.errors import TetherError
from tether.models import Run, RunStatus
from tether.server.dashboard.auth import FormViewer, PageViewer
from tether.server.dashboard.web import new_router, page, redirect, render_fragment, tether_of
from tether.storage.records import RunFilter

router = new_router()

PAGE_SIZE = 50
RANGES = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
DEAD_STATUSES = ["FAILED", "TIMED_OUT"]  # runs that ended without completing and may be retried
MAX_BULK = 500


@dataclass(frozen=True)
class RunQuery:
    """The runs list's filters, as in its URL."""

    status: str = ""
    task: str = ""
    tag: str = ""
    queue: str = ""
    range: str = ""  # "", "1h", "24h", "7d" or "custom" (then `after` / `before`)
    after: str = ""
    before: str = ""
    cursor: str = ""  # a run id: show runs older than it

    def params(self, **changes: str) -> str:
        values = {k: v for k, v in asdict(replace(self, **changes)).items() if v}
        return urlencode(values)

    @property
    def filtered(self) -> bool:
        return any((self.status, self.task, self.tag, self.queue, self.range))


def parse_time(text: str) -> float | None:
    """A `datetime-local` value or ISO 8601 time; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _statuses(q: RunQuery, view: str, problems: list[str]) -> list[str] | None:
    allowed = DEAD_STATUSES if view == "failed" else list(RunStatus.__members__)
    if not q.status:
        return DEAD_STATUSES if view == "failed" else None
    if q.status in allowed:
        return [q.status]
    problems.append(f"status {q.status!r} (one of {', '.join(allowed)})")
    return DEAD_STATUSES if view == "failed" else None


def _created(q: RunQuery, now: float, problems: list[str]) -> tuple[float | None, float | None]:
    if q.range in RANGES:
        return now - RANGES[q.range], None
    if q.range not in ("custom", ""):
        problems.append(f"time range {q.range!r}")
        return None, None
    bounds: list[float | None] = []
    for name, text in (("after", q.after), ("before", q.before)):
        value = parse_time(text) if text else None
        if text and value is None:
            problems.append(f"created {name} {text!r}: not a date and time")
        bounds.append(value)
    return bounds[0], bounds[1]


def to_filter(q: RunQuery, now: float, limit: int, view: str = "runs") -> tuple[RunFilter, list[str]]:
    """The storage filter for `q`, and what in `q` could not be understood (and was ignored)."""
    problems: list[str] = []
    after, before = _created(q, now, problems)
    flt = RunFilter(status=_statuses(q, view, problems), task_id=[q.task] if q.task else None,
                    tag=[q.tag] if q.tag else None, queue=[q.queue] if q.queue else None,
                    created_after=after, created_before=before, before_id=q.cursor or None,
                    limit=limit)
    return flt, problems


def fingerprint(runs: list[Run]) -> str:
    """Changes when a run appears, leaves the page or changes (status, updated_at)."""
    text = "|".join(f"{r.id}:{r.status.value}:{r.updated_at.timestamp() if r.updated_at else 0}"
                    for r in runs)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class RunsPage:
    runs: list[Run]
    next_cursor: str | None
    problems: list[str]
    fingerprint: str


def load(tether: Tether, q: RunQuery, view: str = "runs") -> RunsPage:
    flt, problems = to_filter(q, time.time(), PAGE_SIZE + 1, view)
    records = tether.storage.list_runs(flt)
    runs = [r.to_run(light=True) for r in records[:PAGE_SIZE]]
    more = len(records) > PAGE_SIZE
    return RunsPage(runs, runs[-1].id if more and runs else None, problems, fingerprint(runs))


def rows_html(runs: list[Run], view: str) -> str:
    return render_fragment("_runs_rows.html", runs=runs, selectable=view == "failed",
                           now=time.time())


def _choices(tether: Tether) -> dict[str, list[str]]:
    storage = tether.storage
    tasks = sorted({*tether.tasks, *(t.id for t in storage.list_tasks())})
    queues = sorted({q.name for q in storage.list_queues()})
    return {"tasks": tasks, "queues": queues}


def make_query(status: str, task: str, tag: str, queue: str, range_: str, after: str, before: str,
           cursor: str) -> RunQuery:
    return RunQuery(status.strip().upper(), task.strip(), tag.strip(), queue.strip(),
                    range_.strip(), after.strip(), before.strip(), cursor.strip())


Q = Annotated[str, Query()]


def _list_page(request: Request, q: RunQuery, view: str) -> HTMLResponse:
    tether = tether_of(request)
    found = load(tether, q, view)
    live = f"/live/runs?{q.params()}&view={view}&since={found.fingerprint}"
    context: dict[str, Any] = {
        "q": q, "page": found, "view": view, "live_url": live, "rows": rows_html(found.runs, view),
        "statuses": DEAD_STATUSES if view == "failed" else [s.value for s in RunStatus],
        "ranges": list(RANGES), "nav": view, **_choices(tether)}
    return page(request, "runs.html", context)


@router.get("/")
def runs_page(request: Request, viewer: PageViewer, status: Q = "", task: Q = "", tag: Q = "",
              queue: Q = "", range: Q = "", after: Q = "", before: Q = "",
              cursor: Q = "") -> HTMLResponse:
    q = make_query(status, task, tag, queue, range, after, before, cursor)
    return _list_page(request, q, "runs")


@router.get("/failed")
def failed_page(request: Request, viewer: PageViewer, status: Q = "", task: Q = "", tag: Q = "",
                queue: Q = "", range: Q = "", after: Q = "", before: Q = "",
                cursor: Q = "") -> HTMLResponse:
    q = make_query(status, task, tag, queue, range, after, before, cursor)
    return _list_page(request, q, "failed")


def bulk(tether: Tether, run_ids: list[str], action: str) -> tuple[int, list[str]]:
    """Replay or retry each run; returns how many worked and why the others did not."""
    done, problems = 0, []
    for run_id in dict.fromkeys(run_ids[:MAX_BULK]):
        try:
            if action == "replay":
                tether.runs.replay(run_id)
            else:
                tether.runs.retry(run_id)
            done += 1
        except TetherError as exc:
            problems.append(str(exc))
    return done, problems


def _bulk_answer(request: Request, run_ids: list[str], action: str) -> RedirectResponse:
    if not run_ids:
        return redirect("/failed", "Select at least one run first.", error=True)
    done, problems = bulk(tether_of(request), run_ids, action)
    verb = "Replayed" if action == "replay" else "Retried"
    message = f"{verb} {done} run{'s' if done != 1 else ''}."
    if problems:
        message += f" {len(problems)} could not be: " + "; ".join(problems[:3])
    return redirect("/failed", message, error=bool(problems))


@router.post("/failed/replay")
def bulk_replay(request: Request, viewer: FormViewer,
                run_ids: Annotated[list[str] | None, Form()] = None) -> RedirectResponse:
    return _bulk_answer(request, run_ids or [], "replay")


@router.post("/failed/retry")
def bulk_retry(request: Request, viewer: FormViewer,
               run_ids: Annotated[list[str] | None, Form()] = None) -> RedirectResponse:
    return _bulk_answer(request, run_ids or [], "retry")
