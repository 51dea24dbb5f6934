"""The dashboard: server-rendered pages (Jinja2 templates in `templates/`, one stylesheet and one
small script in `static/`) with live updates over server-sent events. No JavaScript build.

    auth.py        /login, /logout; sessions from API keys; CSRF on every POST
    runs_list.py   /  (runs, filters, paging) and /failed (bulk replay / retry)
    run_detail.py  /runs/{id}: timeline, payload, output, error, logs; cancel / replay / retry
    timeline.py    a trace as positioned bars (pure)
    resources.py   /tasks, /queues (pause / resume), /schedules
    queue_page.py  /queues/keys?name=: a queue's paused keys (resume) and per-key depth
    tokens_page.py /tokens: waiting tokens, complete one with JSON
    workers_page.py /workers: workers and their states (live rows)
    live.py        /live/...: server-sent events that re-render what changed
"""

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from tether.server.dashboard import (
    auth,
    live,
    queue_page,
    resources,
    run_detail,
    runs_list,
    tokens_page,
    workers_page,
)
from tether.server.dashboard.web import STATIC

router = APIRouter(include_in_schema=False)
for _module in (auth, runs_list, run_detail, resources, queue_page, tokens_page, workers_page, live):
    router.include_router(_module.router)
router.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")

__all__ = ["router"]
