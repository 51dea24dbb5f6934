"""Text output of the CLI: run tables and a run's timeline."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tether.models import Run, TraceEvent
from tether.trace import span_label


def when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def compact(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_table(runs: list[Run]) -> list[str]:
    lines = [f"{'ID':<32} {'TASK':<24} {'STATUS':<10} {'ATT':>3}  CREATED"]
    for r in runs:
        lines.append(f"{r.id:<32} {r.task_id[:24]:<24} {r.status.value:<10} {r.attempts:>3}  "
                     f"{when(r.created_at)}")
    return lines


def duration(ms: float | None) -> str:
    if ms is None:
        return "running"
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _event_line(ev: TraceEvent, origin: datetime) -> str:
    offset = f"{'+' + format((ev.at - origin).total_seconds(), '.3f') + 's':>10}"
    if ev.kind == "status":
        source = ev.data.get("from")
        arrow = f"{source} -> {ev.name}" if source else ev.name
        return f"{offset}  {arrow:<24} {ev.data.get('reason', '')}"
    if ev.kind == "attempt":
        err = (ev.data.get("error") or {}).get("message")
        tail = f"  {err}" if err else ""
        return f"{offset}  {ev.name:<24} {ev.outcome:<10} {duration(ev.duration_ms)}{tail}"
    if ev.kind in ("step", "wait", "child"):
        label = f"  {span_label(ev)}"  # "step load", "sleep 5m", "wait for token waitpoint_..."
        err = (ev.data.get("error") or {}).get("message")
        tail = f"  {err}" if err else ""
        if ev.data.get("kind") == "token" and ev.data.get("detail"):
            tail += f"  {ev.data['detail']}"  # the token created
        if ev.data.get("runs"):
            runs = ev.data["runs"]
            tail += f"  runs: {', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''}"
        when_running = "waiting" if ev.kind == "wait" else "running"
        spent = duration(ev.duration_ms) if ev.ended_at else when_running
        return f"{offset}  {label:<24} {ev.outcome:<10} {spent}{tail}"
    return f"{offset}  {'log ' + ev.name:<24} {ev.data.get('message', '')}"


def run_details(run: Run, trace: list[TraceEvent]) -> list[str]:
    lines = [
        f"Run       {run.id}",
        f"Task      {run.task_id}  (queue {run.queue})",
        f"Status    {run.status.value}  attempt {run.attempts} of {run.max_attempts}",
        f"Created   {when(run.created_at)}",
        f"Started   {when(run.started_at)}",
        f"Finished  {when(run.finished_at)}",
    ]
    if run.version:
        lines.append(f"Version   {run.version}")
    if run.trace_id:
        lines.append(f"Trace     {run.trace_id}")
    if run.tags:
        lines.append(f"Tags      {', '.join(run.tags)}")
    if run.idempotency_key:
        lines.append(f"Idem key  {run.idempotency_key}")
    lines.append(f"Payload   {compact(run.payload)}")
    if run.metadata:
        lines.append(f"Metadata  {compact(run.metadata)}")
    if run.output is not None:
        lines.append(f"Output    {compact(run.output)}")
    if run.error:
        lines.append(f"Error     {run.error.get('type', '')}: {run.error.get('message', '')}")
    lines.append("")
    lines.append("Timeline")
    for ev in trace:
        lines.append("  " + _event_line(ev, run.created_at))
    if run.error and run.error.get("traceback"):
        lines += ["", "Traceback of the last error", run.error["traceback"].rstrip()]
    return lines
