"""A run's trace: transitions, attempts, steps and logs merged into one time-ordered list, and
how each span is named where people read it (`span_label`: the dashboard's timeline and
`tether runs show`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tether.models import TraceEvent, to_datetime
from tether.serialization import loads
from tether.storage.records import AttemptRecord, EventRecord, RunRecord, StepRecord

CHILD_KINDS = frozenset({"trigger", "trigger_wait", "batch_wait"})
# how a stored durable call shows in the trace: waits, child runs, and plain steps
_KINDS = {"sleep": "wait", "wait_token": "wait", "trigger_wait": "wait", "batch_wait": "wait",
          "trigger": "child", "token": "step", "step": "step", "once": "step", "patch": "step"}


def _status(at: float, name: str, attempt: int, source: str, reason: str) -> TraceEvent:
    return TraceEvent("status", to_datetime(at), name, attempt,  # type: ignore[arg-type]
                      data={"from": source, "reason": reason})


def _attempt_transitions(a: AttemptRecord) -> list[tuple[float, int, TraceEvent]]:
    """The two transitions an attempt row stands for: the claim, and the move that ended it."""
    claimed = _status(a.started_at, "EXECUTING", a.number, "QUEUED",
                      f"attempt {a.number} claimed by {a.worker_id}")
    out = [(a.started_at, 0, claimed)]
    if a.next_status is not None and a.finished_at is not None:
        out.append((a.finished_at, 3, _status(a.finished_at, a.next_status, a.number,
                                              "EXECUTING", a.reason or "")))
    return out


def build_trace(run: RunRecord, attempts: list[AttemptRecord], steps: dict[str, StepRecord],
                events: list[EventRecord]) -> list[TraceEvent]:
    created = TraceEvent("status", to_datetime(run.created_at), "TRIGGERED",  # type: ignore[arg-type]
                         data={"reason": "stored before anything executes"})
    out: list[tuple[float, int, TraceEvent]] = [(run.created_at, -1, created)]
    for e in events:
        ev = TraceEvent(e.kind, to_datetime(e.at), e.name, e.attempt,  # type: ignore[arg-type]
                        data=loads(e.data))
        out.append((e.at, 0, ev))
    for a in attempts:
        ev = TraceEvent("attempt", to_datetime(a.started_at), f"attempt {a.number}",  # type: ignore[arg-type]
                        a.number, to_datetime(a.finished_at), a.status,
                        {"worker_id": a.worker_id, "error": loads(a.error)})
        out.append((a.started_at, 1, ev))
        out += _attempt_transitions(a)
    for s in steps.values():
        data: dict[str, object] = {"kind": s.kind, "key": s.key}
        if s.error:
            data["error"] = loads(s.error)
        if s.kind in CHILD_KINDS and s.output:
            data["runs"] = loads(s.output).get("runs", [])
        elif s.kind in ("sleep", "wait_token", "token", "patch", "acquire") and s.output:
            data["detail"] = loads(s.output)
        if s.kind == "wait_token":
            token = _waited_token(s, data.get("detail"))
            if token:
                data["token"] = token
        ev = TraceEvent(_KINDS.get(s.kind, "step"), to_datetime(s.started_at),  # type: ignore[arg-type]
                        s.key, s.attempt, to_datetime(s.finished_at), s.status, data)
        out.append((s.started_at, 2, ev))
    out.sort(key=lambda item: (item[0], item[1]))
    return [ev for _, _, ev in out]


def _waited_token(step: StepRecord, detail: Any) -> str | None:
    """The token a wait_token row waits for: in its output while WAITING; in its name
    ("wait_for_token:<id>") once done (rows stored before names held it: unknown)."""
    if step.status == "WAITING" and isinstance(detail, dict) and detail.get("token"):
        return str(detail["token"])
    _, _, token = step.name.partition(":")
    return token or None


_OCCURRENCE = re.compile(r"#\d+$")  # "sleep#2": the second sleep of the run
_CHILD_CALLS = {"trigger": "trigger", "trigger_wait": "trigger and wait",
                "batch_wait": "batch trigger and wait"}


def _amount(seconds: float) -> str:
    """A sleep's length as written in code: "5m", "1h 30m", "2d 4h", "250ms" (at most two units,
    the larger ones)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    rest, parts = round(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])


def _sleep_label(ev: TraceEvent) -> str:
    detail = ev.data.get("detail")
    until = detail.get("until") if isinstance(detail, dict) else None
    label = "sleep"
    if isinstance(until, int | float):
        label += " " + _amount(max(0.0, until - ev.at.timestamp()))
    name = _OCCURRENCE.sub("", ev.name)
    return label if name == "sleep" else f"{label} ({name})"


def span_label(ev: TraceEvent, show_id: Callable[[str], str] = str) -> str:
    """A step, wait or child span named once, in words: `step load`, `once charge`, `sleep 5m`,
    `create token`, `wait for token waitpoint_…`, `trigger and wait: build-report`,
    `batch trigger and wait: resize`, `trigger: notify`. `show_id` shortens ids for narrow
    places. The trace's own fields (`name`, `data["kind"]`) stay as stored."""
    kind = str(ev.data.get("kind", ev.kind))
    if kind == "sleep":
        return _sleep_label(ev)
    if kind == "token":
        return "create token"
    if kind == "patch":  # ctx.patched: which branch this run takes
        branch = "new code" if ev.data.get("detail") else "old code"
        return f"patch {ev.name.removeprefix('patch:')}: {branch}"
    if kind == "acquire":  # ctx.acquire: units taken from a named rate limit
        detail = ev.data.get("detail")
        weight = detail.get("weight") if isinstance(detail, dict) else None
        limit = _OCCURRENCE.sub("", ev.name.removeprefix("acquire:"))
        return f"acquire {limit}" + (f" x{weight:g}" if isinstance(weight, int | float)
                                     and weight != 1 else "")
    if kind == "wait_token":
        token = ev.data.get("token")
        return f"wait for token {show_id(str(token))}" if token else "wait for token"
    if kind in _CHILD_CALLS:
        _, _, task = ev.name.partition(":")
        return f"{_CHILD_CALLS[kind]}: {_OCCURRENCE.sub('', task)}"
    return f"{kind} {ev.name}"
