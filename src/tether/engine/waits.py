"""Durable waits inside a run: sleeps, tokens and child runs.

A wait that is not over raises `Suspend`, which unwinds the task's code; the attempt then ends
with the run WAITING (its worker and queue slots free) and the wait's row stored. When the wait
is over the run is queued again and its code runs from the top: completed steps, triggers and
waits return their stored results, so execution continues where it stopped.

Every wait is a row of the run's steps, at the position the code reached it, so a replay finds
it (and notices if the code changed). Kinds: "sleep", "token" (a token was created),
"wait_token", "trigger" (children started, not awaited), "trigger_wait" and "batch_wait".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tether.clock import new_id
from tether.engine.scope import COMPLETED, FAILED, STARTED, RunScope
from tether.engine.triggering import build_runs
from tether.errors import TokenNotFound, WaitTimeout
from tether.models import FINAL_STATUSES, RunStatus
from tether.observe.metrics import count_triggered
from tether.observe.tracing import stored
from tether.serialization import dumps, loads
from tether.storage.records import RunRecord, StepRecord, TokenRecord

if TYPE_CHECKING:
    from tether.app import Tether

NEVER = 253402300799.0  # 9999-12-31: the wake time of a wait with no timeout
WAITING = "WAITING"
SLEEP = "sleep"  # what a sleeping run waits for: only the time
GATHER = "gather_"  # a run parked on several waits at once waits for gather_<run>_<key>.<lease>
POLL_UNLINKED = 2.0  # a child that cannot be linked to the wait (see trigger_children) is polled


class Suspend(BaseException):
    """Unwinds a run's code to park it. A BaseException, so `except Exception` in task code does
    not swallow it (a bare `except:` would; re-raise it)."""

    def __init__(self, until: float, waiting_for: str, step: StepRecord | None,
                 reason: str, key: str = "") -> None:
        super().__init__(reason)
        self.until, self.waiting_for, self.step, self.reason = until, waiting_for, step, reason
        self.key = key  # the durable call's key (a gather of several waits names its parts by it)

    def again(self) -> Suspend:
        """The same park, to raise once more (in another task, or at a later call)."""
        return Suspend(self.until, self.waiting_for, None, self.reason, self.key)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class InlineSleep:
    """A sleep short enough to wait out in process; call `done()` after sleeping."""

    seconds: float
    done: Callable[[], None]


# -- sleeps -----------------------------------------------------------------------------------
def plan_sleep(scope: RunScope, name: str, until: float,
               asked_at: float | None = None) -> InlineSleep | None:
    """Nothing to do (None), a short in-process sleep, or raise Suspend to park the run.
    `asked_at`: the time `until` was computed from (a new sleep's row starts then, so it spans
    exactly the length asked for)."""
    key, stored = scope.locate(name)
    if stored is not None and stored.status == COMPLETED:
        if scope.trace is not None and _resumes_from(scope, stored):
            # the store ended the sleep when it queued the run: its span is made here, once
            scope.trace.wait(f"sleep {key}", "sleep", stored.started_at,
                             stored.finished_at or scope.clock.now(), True)
        return None
    now = scope.clock.now()
    started = now if asked_at is None else min(asked_at, now)
    if stored is not None:  # parked before: the wake time chosen then stands
        until, started = loads(stored.output)["until"], stored.started_at
    output = json.dumps({"until": until})

    def done() -> None:
        ended = scope.clock.now()
        scope.save(scope.row(key, name, "sleep", COMPLETED, output, None, started, ended))
        if scope.trace is not None:
            scope.trace.wait(f"sleep {key}", "sleep", started, ended, stored is not None)

    remaining = until - now
    if remaining <= 0:
        if stored is not None:
            done()
        return None
    if remaining <= scope.inline_sleep:
        return InlineSleep(remaining, done)
    step = scope.row(key, name, "sleep", WAITING, output, None, started, None)
    raise Suspend(until, SLEEP, step, f"sleeping until {_iso(until)}", key)


def _resumes_from(scope: RunScope, stored: StepRecord) -> bool:
    """Whether this segment is the one that resumes the run from this parked sleep (its last
    stored call, and the run was waiting for a sleep; or a sleep of the gather the run waited
    for: engine/gathering.py names a gather after its first wait's key)."""
    waiting = scope.record.waiting_for or ""
    if waiting.startswith(GATHER):
        first = scope.steps.get(
            waiting.removeprefix(f"{GATHER}{scope.record.id}_").rpartition(".")[0])
        return (first is not None and first.seq is not None and stored.seq is not None
                and stored.seq >= first.seq)
    return waiting == SLEEP and stored.seq == scope.replay_until


# -- tokens -----------------------------------------------------------------------------------
def new_token(run_id: str | None, now: float, timeout_at: float | None,
              idempotency_key: str | None, tags: list[str],
              key_ttl: float | None = None) -> TokenRecord:
    """A token to store. With `key_ttl` (seconds), its idempotency key finds it until then;
    without, for ever."""
    expires = None if idempotency_key is None or key_ttl is None else now + key_ttl
    return TokenRecord(new_id("waitpoint"), run_id, WAITING, None, timeout_at, idempotency_key,
                       json.dumps(tags), now, None, expires, int(idempotency_key is not None))


def create_token(scope: RunScope, timeout_at: float | None, idempotency_key: str | None,
                 tags: list[str], key_ttl: float | None = None) -> TokenRecord:
    key, stored = scope.locate("create_token")
    storage = scope.storage
    if stored is not None and stored.status == COMPLETED:
        token = storage.get_token(loads(stored.output))
        if token is not None:
            return token
    now = scope.clock.now()
    step = scope.row(key, "create_token", "token", COMPLETED, None, None, now, now)
    scope.drain()  # the token's row is stored with it: the rows before it first
    token, _ = storage.create_token(new_token(scope.lease.run_id, now, timeout_at,
                                              idempotency_key, tags, key_ttl), scope.lease, step)
    scope.steps[key] = step
    return token


def wait_for_token(scope: RunScope, token_id: str) -> Any:
    key, stored = scope.locate("wait_for_token")
    name = f"wait_for_token:{token_id}"  # the row's name keeps the token's id for the trace
    if stored is not None and stored.status == COMPLETED:
        return loads(stored.output)
    if stored is not None and stored.status == FAILED:
        raise WaitTimeout(token_id, None)
    now = scope.clock.now()
    started = stored.started_at if stored is not None else now
    token = scope.storage.get_token(token_id)
    if token is None:
        raise TokenNotFound(token_id)
    if token.status == WAITING and token.timeout_at is not None and token.timeout_at <= now:
        token = scope.storage.time_out_token(token_id, now) or token
    if token.status == COMPLETED:
        scope.save(scope.row(key, name, "wait_token", COMPLETED, token.output, None, started, now))
        if scope.trace is not None:
            scope.trace.wait(name, "wait_token", started, now, stored is not None)
        return loads(token.output)
    if token.status != WAITING:
        error = {"message": str(WaitTimeout(token_id, token.timeout_at)),
                 "type": "tether.WaitTimeout"}
        scope.save(scope.row(key, name, "wait_token", FAILED, None, dumps(error), started, now))
        if scope.trace is not None:
            scope.trace.wait(name, "wait_token", started, now, stored is not None,
                             error["message"])
        raise WaitTimeout(token_id, token.timeout_at)
    step = scope.row(key, name, "wait_token", WAITING, json.dumps({"token": token_id}), None,
                     started, None)
    raise Suspend(token.timeout_at or NEVER, token_id, step, f"waiting for token {token_id}",
                  key)


# -- child runs -------------------------------------------------------------------------------
def _result(record: RunRecord) -> dict[str, Any]:
    ok = record.status == RunStatus.COMPLETED
    return {"ok": ok, "output": loads(record.output) if ok else None,
            "error": None if ok else loads(record.error) or {"message": record.status.lower()},
            "run_id": record.id, "status": record.status}


def trigger_children(scope: RunScope, app: Tether, kind: str, task_id: str,
                     items: list[tuple[Any, dict[str, Any]]]) -> tuple[list[str], Any]:
    """Start child runs once per run (kind "trigger", "trigger_wait" or "batch_wait"). Returns
    the children's ids and, for the waiting kinds, their results (dicts, in order); parks the
    run (Suspend) while any child is unfinished."""
    label = {"trigger": "trigger", "trigger_wait": "trigger_and_wait",
             "batch_wait": "batch_trigger_and_wait"}[kind]
    name = f"{label}:{task_id}"
    key, stored = scope.locate(name)
    wait = kind != "trigger"
    group = f"group_{scope.lease.run_id}_{key}" if wait else None
    if stored is None:
        ids = _start_children(scope, app, kind, name, key, task_id, items, group)
        started = scope.clock.now()
    else:
        info = loads(stored.output)
        if stored.status == COMPLETED and "results" in info:
            return info["runs"], info["results"]
        ids, started = info["runs"], stored.started_at
    if not wait:
        return ids, None
    records = scope.storage.get_runs(ids)
    if all(RunStatus(r.status) in FINAL_STATUSES for r in records):
        results = [_result(r) for r in records]
        ended = scope.clock.now()
        scope.save(scope.row(key, name, kind, COMPLETED, dumps({"runs": ids, "results": results}),
                             None, started, ended))
        if scope.trace is not None:
            scope.trace.wait(name, kind, started, ended, stored is not None)
        return ids, results
    linked = all(r.resolves == group or RunStatus(r.status) in FINAL_STATUSES for r in records)
    reason = f"waiting for {len(ids)} child run(s) of {task_id}"
    if not linked or group is None:  # an idempotency key returned another wait's run: poll it
        raise Suspend(scope.clock.now() + POLL_UNLINKED, SLEEP, None, reason, key)
    raise Suspend(NEVER, group, None, reason, key)


def _start_children(scope: RunScope, app: Tether, kind: str, name: str, key: str, task_id: str,
                    items: list[tuple[Any, dict[str, Any]]], group: str | None) -> list[str]:
    spec, validate = app.spec_for(task_id)
    now = scope.clock.now()
    runs = build_runs(spec, validate, items, now, app.max_payload_size, app.objects)
    parent = scope.record
    for new in runs:
        new.parent_id = parent.id
        new.root_id = parent.root_id or parent.id
        new.depth = parent.depth + 1
        new.resolves = group
    app._ensure_queue(spec.queue, now)
    status = COMPLETED if kind == "trigger" else STARTED
    step = scope.row(key, name, kind, status, None, None, now,
                        now if kind == "trigger" else None)
    scope.drain()  # the trigger's row is stored with the children: the rows before it first
    span = scope.trace.child_trigger(task_id, runs[0].queue, runs) if scope.trace and runs else None
    created = stored(span, lambda: scope.storage.create_child_runs(scope.lease, step, runs, now))
    count_triggered(created)
    scope.steps[key] = step
    return [record.id for record, _ in created]
