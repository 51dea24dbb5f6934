"""A run's trace as rows of horizontal bars: the run, its attempts, their steps and waits, and
child runs, each placed by its start time on one axis from the run's creation to its end (or now).
Pure: no storage, no HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tether.models import Run, TraceEvent
from tether.server.dashboard.filters import duration, epoch, short_id, status_class
from tether.trace import span_label

MAX_CHILD_ROWS = 12  # per wait or trigger; the rest is summarized in one row
MAX_ROWS = 400  # a run with thousands of steps shows its first ones
NICE_STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30,
              60, 120, 300, 600, 900, 1800, 3600, 7200, 4 * 3600, 6 * 3600, 12 * 3600, 86400,
              2 * 86400, 7 * 86400, 30 * 86400]


@dataclass
class Row:
    label: str
    kind: str  # run, attempt, step, once, token, wait, child, more
    level: int
    start: float
    end: float | None  # None: still going (drawn up to now)
    css: str
    href: str | None = None
    note: str = ""  # a second, muted label (a child's task, a token id, an error)
    left: float = 0.0  # percent of the axis
    width: float = 0.0
    duration: str = ""


@dataclass
class Timeline:
    rows: list[Row] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    total: str = ""


def tick_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    if seconds < 86400:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 86400:g}d"


def ticks(total: float, most: int = 6) -> list[tuple[float, str]]:
    """Round offsets from the start (0, 200ms, 400ms, ...) as (percent, label)."""
    step = next((s for s in NICE_STEPS if total / s <= most), NICE_STEPS[-1])
    out, at = [], 0.0
    while at <= total + 1e-9:
        out.append((at / total * 100, tick_label(round(at, 6))))
        at += step
    return out


def _child_rows(ids: list[str], children: dict[str, Run], fallback: float) -> list[Row]:
    rows = []
    for run_id in ids[:MAX_CHILD_ROWS]:
        child = children.get(run_id)
        if child is None:
            rows.append(Row(run_id, "child", 2, fallback, fallback, "st-none", f"/runs/{run_id}"))
            continue
        start = epoch(child.created_at) or fallback
        end = None if not child.is_final else epoch(child.finished_at) or start
        rows.append(Row(child.task_id, "child", 2, start, end, status_class(child.status),
                        f"/runs/{run_id}", note=child.status.value))
    if len(ids) > MAX_CHILD_ROWS:
        rows.append(Row(f"+{len(ids) - MAX_CHILD_ROWS} more child runs", "more", 2, fallback,
                        fallback, "st-none"))
    return rows


def _outcome_css(ev: TraceEvent) -> str:
    if ev.ended_at is None or ev.outcome in (None, "STARTED", "EXECUTING"):
        return "st-executing"
    return status_class(ev.outcome)


def _error_note(ev: TraceEvent) -> str:
    error = ev.data.get("error") or {}
    return str(error.get("message", ""))[:120] if isinstance(error, dict) else ""


def _event_rows(ev: TraceEvent, seen: set[int], children: dict[str, Run]) -> list[Row]:
    start = ev.at.timestamp()
    end = epoch(ev.ended_at)
    if ev.kind == "attempt":
        number = ev.attempt or 0
        label = f"attempt {number}" + (" · resumed" if number in seen else "")
        seen.add(number)
        return [Row(label, "attempt", 0, start, end, _outcome_css(ev), note=_error_note(ev))]
    kind = str(ev.data.get("kind", ev.kind))
    if ev.kind == "step":
        if kind == "token":  # "create token", its id beside
            return [Row(span_label(ev), "token", 1, start, end, _outcome_css(ev),
                        note=_error_note(ev) or short_id(str(ev.data.get("detail", ""))))]
        if kind == "patch":  # ctx.patched: "patch fix-rounding: new code"
            return [Row(span_label(ev), "step", 1, start, end, _outcome_css(ev))]
        # the user's own name; the row's style tells a step from a `once`
        return [Row(ev.name, "once" if kind == "once" else "step", 1, start, end,
                    _outcome_css(ev), note=_error_note(ev))]
    if ev.kind in ("wait", "child"):
        css = "wait " + _outcome_css(ev) if ev.kind == "wait" else _outcome_css(ev)
        runs = [str(r) for r in ev.data.get("runs", [])]
        row = Row(span_label(ev, short_id), ev.kind, 1, start, end, css,
                  note=_wait_note(kind, ev, runs))
        return [row, *_child_rows(runs, children, start)]
    return []


def _wait_note(kind: str, ev: TraceEvent, runs: list[str]) -> str:
    if len(runs) > 1:  # one child shows in the row below
        return f"{len(runs)} child runs"
    if kind == "wait_token" and ev.outcome == "COMPLETED":
        return "completed"
    return _error_note(ev)


def _place(rows: list[Row], origin: float, now: float) -> float:
    last = max([origin + 0.001, *(r.end if r.end is not None else now for r in rows)])
    total = last - origin
    for r in rows:
        end = r.end if r.end is not None else now
        r.left = max(0.0, (r.start - origin) / total * 100)
        r.width = max(0.0, min(100.0 - r.left, (end - r.start) / total * 100))
        if r.kind != "more":
            r.duration = duration(end - r.start) if r.end is not None else duration(end - r.start) + "…"
    return total


def build(run: Run, trace: list[TraceEvent], children: dict[str, Run], now: float) -> Timeline:
    """Rows for the trace: the run first, then attempts and what happened in them, by start."""
    origin = run.created_at.timestamp()
    end = epoch(run.finished_at) if run.is_final else None
    rows = [Row(run.task_id, "run", 0, origin, end, status_class(run.status))]
    seen: set[int] = set()
    for ev in trace:
        rows += _event_rows(ev, seen, children)
    if len(rows) > MAX_ROWS:
        hidden = len(rows) - MAX_ROWS
        more = Row(f"+{hidden} more spans (see: tether runs show)", "more", 1, origin, origin,
                   "st-none")
        rows = [*rows[:MAX_ROWS], more]
    total = _place(rows, origin, now)
    return Timeline(rows, ticks(total), duration(total))


def child_ids(trace: list[TraceEvent]) -> list[str]:
    """The child runs the trace names, at most MAX_CHILD_ROWS per wait or trigger."""
    out: list[str] = []
    for ev in trace:
        if ev.kind in ("wait", "child"):
            out += [str(r) for r in ev.data.get("runs", [])[:MAX_CHILD_ROWS]]
    return out


def logs(trace: list[TraceEvent], origin: datetime) -> list[dict[str, object]]:
    """The log lines of the trace with their offset from the run's creation."""
    return [{"offset": (ev.at - origin).total_seconds(), "level": ev.name,
             "message": ev.data.get("message", ""), "logger": ev.data.get("logger", ""),
             "attempt": ev.attempt, "at": ev.at}
            for ev in trace if ev.kind == "log"]


def transitions(trace: list[TraceEvent], origin: datetime) -> list[dict[str, object]]:
    return [{"offset": (ev.at - origin).total_seconds(), "to": ev.name,
             "source": ev.data.get("from"), "reason": ev.data.get("reason", ""), "at": ev.at}
            for ev in trace if ev.kind == "status"]
