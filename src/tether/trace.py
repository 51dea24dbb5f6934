"""A run's trace: transitions, attempts, steps and logs merged into one time-ordered list."""

from __future__ import annotations

from tether.models import TraceEvent, to_datetime
from tether.serialization import loads
from tether.storage.records import AttemptRecord, EventRecord, RunRecord, StepRecord

CHILD_KINDS = frozenset({"trigger", "trigger_wait", "batch_wait"})
# how a stored durable call shows in the trace: waits, child runs, and plain steps
_KINDS = {"sleep": "wait", "wait_token": "wait", "trigger_wait": "wait", "batch_wait": "wait",
          "trigger": "child", "token": "step", "step": "step", "once": "step"}


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
        elif s.kind in ("sleep", "wait_token", "token") and s.output:
            data["detail"] = loads(s.output)
        ev = TraceEvent(_KINDS.get(s.kind, "step"), to_datetime(s.started_at),  # type: ignore[arg-type]
                        s.key, s.attempt, to_datetime(s.finished_at), s.status, data)
        out.append((s.started_at, 2, ev))
    out.sort(key=lambda item: (item[0], item[1]))
    return [ev for _, _, ev in out]
