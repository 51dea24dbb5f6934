"""Tasks, queues and schedules: what is registered, how deep each queue is, what fires when.
Queues pause and resume; schedules activate and deactivate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tether.app import Tether
from tether.errors import TetherError
from tether.schedules import Schedule
from tether.server.dashboard.auth import FormViewer, PageViewer
from tether.server.dashboard.web import new_router, page, redirect, tether_of
from tether.storage.records import TaskRecord

router = new_router()


@dataclass
class TaskRow:
    id: str
    queue: str
    concurrency: int | None
    retry: dict[str, Any]
    max_duration: float | None
    updated_at: float | None
    in_code: bool  # defined in this server's app (else known from the workers' registry)
    crons: list[str] = field(default_factory=list)


def _task_rows(tether: Tether) -> list[TaskRow]:
    """Tasks the workers registered, and those of this server's app (which may not have run)."""
    stored: dict[str, TaskRecord] = {r.id: r for r in tether.storage.list_tasks()}
    now = time.time()
    records = {**stored, **{t.id: t.record(now) for t in tether.tasks.values() if t.id not in stored}}
    rows = []
    for task_id, record in sorted(records.items()):
        options = json.loads(record.options or "{}")
        rows.append(TaskRow(task_id, record.queue, options.get("concurrency"),
                            options.get("retry") or {}, options.get("max_duration"),
                            record.updated_at if task_id in stored else None,
                            task_id in tether.tasks))
    return rows


@router.get("/tasks")
def tasks_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    tether = tether_of(request)
    rows = _task_rows(tether)
    by_task = {r.id: r for r in rows}
    for schedule in tether.schedules.list():
        if schedule.task_id in by_task:
            by_task[schedule.task_id].crons.append(schedule.cron)
    stats = tether.storage.queue_stats()
    return page(request, "tasks.html", {"tasks": rows, "stats": stats, "nav": "tasks"})


@dataclass
class QueueRow:
    name: str
    concurrency: int | None
    paused: bool
    queued: int
    executing: int


@router.get("/queues")
def queues_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    storage = tether_of(request).storage
    stats = storage.queue_stats()
    rows = [QueueRow(q.name, q.concurrency, bool(q.paused), *stats.get(q.name, (0, 0)))
            for q in sorted(storage.list_queues(), key=lambda q: q.name)]
    return page(request, "queues.html", {"queues": rows, "nav": "queues"})


def _pause(request: Request, name: str, paused: bool) -> RedirectResponse:
    storage = tether_of(request).storage
    if not storage.set_queue_paused(name, paused, time.time()):
        return redirect("/queues", f"No queue named {name!r}.", error=True)
    state = "paused: workers claim none of its runs until it is resumed" if paused else "resumed"
    return redirect("/queues", f"Queue {name} {state}.")


@router.post("/queues/pause")
def pause_queue(request: Request, viewer: FormViewer,
                name: Annotated[str, Form()]) -> RedirectResponse:
    return _pause(request, name, True)


@router.post("/queues/resume")
def resume_queue(request: Request, viewer: FormViewer,
                 name: Annotated[str, Form()]) -> RedirectResponse:
    return _pause(request, name, False)


@router.get("/versions")
def versions_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    return page(request, "versions.html",
                {"versions": tether_of(request).versions.list(), "nav": "versions"})


@router.get("/schedules")
def schedules_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    schedules = sorted(tether_of(request).schedules.list(), key=lambda s: (s.task_id, s.id))
    upcoming = {s.id: _upcoming(s) for s in schedules}
    return page(request, "schedules.html",
                {"schedules": schedules, "upcoming": upcoming, "nav": "schedules"})


def _upcoming(schedule: Schedule) -> list[float]:
    if not schedule.active:
        return []
    try:
        return [d.timestamp() for d in schedule.upcoming(3)]
    except TetherError:
        return []


def _switch(request: Request, schedule_id: str,
            action: Callable[[str], Schedule], done: str) -> RedirectResponse:
    try:
        schedule = action(schedule_id)
    except TetherError as exc:
        return redirect("/schedules", str(exc), error=True)
    return redirect("/schedules", f"Schedule {schedule.id} ({schedule.task_id}) {done}.")


@router.post("/schedules/activate")
def activate_schedule(request: Request, viewer: FormViewer,
                      schedule_id: Annotated[str, Form()]) -> RedirectResponse:
    return _switch(request, schedule_id, tether_of(request).schedules.activate, "activated")


@router.post("/schedules/deactivate")
def deactivate_schedule(request: Request, viewer: FormViewer,
                        schedule_id: Annotated[str, Form()]) -> RedirectResponse:
    return _switch(request, schedule_id, tether_of(request).schedules.deactivate, "deactivated")
