"""TetherEnv: a user's app run inline on a temporary SQLite file with a manual clock, by the
engine's own worker (Worker.run_until_idle), for tests. See docs/testing.md."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tether.app import Tether
from tether.clock import ManualClock
from tether.durations import Duration, seconds
from tether.engine.faults import Moment
from tether.errors import ConfigurationError
from tether.models import Run, Token
from tether.serialization import dumps_output
from tether.storage.records import RunFilter
from tether.task import Task
from tether.testing.faults import (
    Faults,
    Rule,
    TestingError,
    error_value,
    step_name,
    times_count,
)
from tether.worker.housekeeping import reap
from tether.worker.scheduler import Scheduler
from tether.worker.worker import Worker

START = datetime(2026, 1, 1, tzinfo=UTC)  # the clock's default start: a fixed, plain time
CONCURRENCY = 200  # runs executed side by side (fan-outs run in one go)
MAX_STOPS = 10_000  # the most moments one `advance` stops at
MAX_PASSES = 1_000  # the most rounds of chores and claims one settling goes through
EPSILON = 0.001  # past a lease's expiry by this much, it has lapsed


def _start_seconds(start: datetime | float | None) -> float:
    if start is None:
        return START.timestamp()
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise TestingError(f"start must be a timezone-aware datetime; got {start!r}")
        return start.timestamp()
    if isinstance(start, int | float) and not isinstance(start, bool):
        return float(start)
    raise TestingError(f"start must be a timezone-aware datetime or epoch seconds; got {start!r}")


def _run_id(run: Run | str | Any) -> str:
    run_id = run if isinstance(run, str) else getattr(run, "id", None)
    if not isinstance(run_id, str):
        raise TestingError(f"expected a Run, a RunHandle or a run id; got {run!r}")
    return run_id


class TetherEnv:
    """`app` executed inline on the SQLite file `directory/tether.db` with a ManualClock that
    starts at `start` (default 2026-01-01T00:00:00Z). While the env is open, the app is bound
    to that database (`Tether.bound_to`): its tasks, `app.runs`, `app.tokens`, ... never touch
    the app's own database; `close()` gives it back. Every sleep parks the run (no sleep is
    waited out in process), and retries in place do not wait.

    Each call that changes something (`run`, `advance`, `complete_token`, `drain`) then
    executes every run that is ready, children included, until none is left: what returns is
    what a real worker would have reached once it was idle again."""

    def __init__(self, app: Tether, directory: str | Path, *,
                 start: datetime | float | None = None) -> None:
        if not isinstance(app, Tether):
            raise TestingError(f"TetherEnv needs the app (a tether.Tether); got {app!r}")
        if not app.tasks:
            raise TestingError("the app defines no tasks: nothing for TetherEnv to run")
        folder = Path(directory).resolve()
        if not folder.is_dir():
            raise TestingError(f"TetherEnv needs an existing directory; {folder} is not one")
        self.clock = ManualClock(_start_seconds(start))
        self.faults = Faults()
        self._stack = ExitStack()
        self.app: Tether = self._stack.enter_context(app.bound_to(
            f"sqlite:///{folder / 'tether.db'}", clock=self.clock, inline_sleep=0.0,
            object_store=f"file://{folder / 'objects'}"))
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> None:
        app, now = self.app, self.clock.now()
        self.worker = Worker(app, concurrency=CONCURRENCY, stall_seconds=0)
        self.worker.runner.hooks = self.faults
        self._held: set[str] = set()
        self._crashes_checked = 0  # how many of faults.crashed _check_crashes looked at
        self._executing = False  # (a task's code calling the env would run the worker twice)
        tasks = list(app.tasks.values())
        app.storage.register_tasks([t.record(now) for t in tasks], [t.queue_record() for t in tasks])
        self._scheduler = Scheduler(app)
        self._scheduler.sync_declared(now)  # schedules declared with @app.task(cron=...)

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database and give the app its own back."""
        self._stack.close()

    def __enter__(self) -> TetherEnv:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def now(self) -> datetime:
        """The env's clock, as a UTC datetime."""
        return datetime.fromtimestamp(self.clock.now(), UTC)

    @property
    def lease_seconds(self) -> float:
        """How long after a crash (`crash_at`) the run's lease lapses: the app's lease."""
        return self.app.lease_seconds

    # -- running --------------------------------------------------------------------------------
    def run(self, task: Task[Any, Any] | str, payload: Any = None, **options: Any) -> Run:
        """Trigger `task` (the task, or its id) with `payload` and the options `trigger` takes,
        then execute until nothing is ready: the run ended, or parked (a sleep, a token, a
        child still held, a retry's backoff, a crash), and so did whatever it triggered. The
        run as stored then."""
        spec = self._task(task)
        handle = self.app.trigger(spec.id, payload, **options)
        self.drain()
        return self.app.runs.retrieve(handle.id)

    def drain(self) -> int:
        """Execute every run that is ready now, children included (and queue what is due by the
        clock: sleeps over, retries, schedules), until none is left; the number of attempts."""
        total = 0
        for _ in range(MAX_PASSES):
            self._chores()
            done = self._execute()
            total += done
            if done == 0:
                return total
        raise TestingError(f"still executing after {MAX_PASSES} rounds: runs keep making ready "
                           "runs (a task that triggers itself without end?)")

    def advance(self, by: Duration) -> int:
        """Move the clock forward by `by` ("1d", "90s", a timedelta, seconds), stopping at each
        moment something falls due on the way (a sleep or a token's timeout ends, a retry's
        backoff, a schedule's slot, a crashed attempt's lease lapses) to execute what became
        ready, as workers would have; the number of attempts executed."""
        try:
            amount = seconds(by, "advance")
        except ConfigurationError as exc:
            raise TestingError(str(exc)) from None
        target = self.clock.now() + amount
        total = self.drain()
        for _ in range(MAX_STOPS):
            at = self._next_moment()
            if at is None or at > target:
                break
            self.clock.set(at)
            total += self.drain()
        else:
            raise TestingError(f"advance({by!r}) stopped at {MAX_STOPS} moments on the way; "
                               "advance in smaller pieces")
        self.clock.set(target)
        return total + self.drain()

    def complete_token(self, token: Token | str, data: Any = None) -> Token:
        """Complete a waitpoint token (as `app.tokens.complete`), then execute what that made
        ready (the run waiting for it resumes)."""
        token_id = token.id if isinstance(token, Token) else token
        completed = self.app.tokens.complete(token_id, data)
        self.drain()
        return completed

    def hold(self, task: Task[Any, Any] | str) -> None:
        """Execute no run of `task` until `release(task)`: they stay queued (see `triggered`),
        a parent waiting for them stays parked."""
        self._held.add(self._task(task).id)
        self._serve()

    def release(self, task: Task[Any, Any] | str) -> int:
        """Execute runs of `task` again, starting with those ready now; the attempts executed."""
        self._held.discard(self._task(task).id)
        self._serve()
        return self.drain()

    # -- reading --------------------------------------------------------------------------------
    def triggered(self, task: Task[Any, Any] | str) -> list[Run]:
        """Every run of `task` in this env, oldest first (by env.run, a task's ctx.trigger...,
        a schedule, or the app), as stored now: `.payload`, `.status`, `.output`,
        `.parent_id`..."""
        spec = self._task(task)
        records = self.app.storage.list_runs(RunFilter(task_id=[spec.id], limit=1_000_000))
        return sorted((r.to_run() for r in records), key=lambda run: run.id)

    def retrieve(self, run: Run | str) -> Run:
        """The run as stored now (give a Run, a RunHandle or an id)."""
        return self.app.runs.retrieve(_run_id(run))

    def token_for(self, run: Run | str) -> str:
        """The id of the token `run` waits for (TestingError if it waits for none, or for
        several at once: see `tokens_for`)."""
        tokens = self.tokens_for(run)
        if len(tokens) == 1:
            return tokens[0]
        record = self.app.storage.get_run(_run_id(run))
        status = "unknown" if record is None else record.status
        waiting = None if record is None else record.waiting_for
        if tokens:
            raise TestingError(f"run {_run_id(run)} waits for {len(tokens)} tokens at once "
                               f"({', '.join(tokens)}): use tokens_for")
        raise TestingError(f"run {_run_id(run)} waits for no token (status {status}, "
                           f"waiting for {waiting!r})")

    def tokens_for(self, run: Run | str) -> list[str]:
        """The ids of the tokens `run` waits for, in call order: the one of a single wait, or
        those still waiting among several waits at once (asyncio.gather, ctx.parallel)."""
        from tether.serialization import loads

        record = self.app.storage.get_run(_run_id(run))
        waiting = record.waiting_for if record is not None and record.status == "WAITING" else None
        if waiting is None or not waiting.startswith(("waitpoint_", "gather_")):
            return []
        if waiting.startswith("waitpoint_"):
            return [waiting]
        rows = sorted((r for r in self.app.storage.load_steps(_run_id(run)).values()
                       if r.kind == "wait_token" and r.status == "WAITING"),
                      key=lambda r: r.seq or 0)
        ids = [loads(r.output)["token"] for r in rows]
        return [t for t in ids if (found := self.app.storage.get_token(t)) is not None
                and found.status == "WAITING"]

    def steps(self, run: Run | str) -> dict[str, Any]:
        """The run's stored step rows by key: each a dict with `status`, `result` (its value),
        `attempt` (the attempt that stored it) and `kind`."""
        from tether.serialization import loads

        rows = self.app.storage.load_steps(_run_id(run))
        return {key: {"status": row.status, "result": loads(row.output) if row.output else None,
                      "attempt": row.attempt, "kind": row.kind}
                for key, row in sorted(rows.items(), key=lambda kv: kv[1].seq or 0)}

    # -- faults ---------------------------------------------------------------------------------
    def fail_step(self, name: str, *, times: int = 1, error: Any = None,
                  task: Task[Any, Any] | str | None = None) -> None:
        """The next `times` calls of step `name` (every occurrence, or "name#2" for the second
        in a run; only in runs of `task` if given) raise `error` instead of calling its
        function: an exception instance, a class (called with a message), or by default
        InjectedFault. Each call counts, retries in place included; the run's retry policy
        then does what it does with a failing step."""
        rule = Rule("fail", step_name(name, "fail_step"), self._task_id(task),
                    times_count(times, "fail_step"), error=error_value(error))
        self.faults.add(rule)

    def crash_at(self, name: str, *, when: Moment = "before", times: int = 1,
                 task: Task[Any, Any] | str | None = None) -> None:
        """The next `times` attempts that execute step `name` stop there as if their worker
        died: `when="before"` its function is called, or "after" it returned but before its
        result was stored. Nothing more of that attempt is written; the run stays EXECUTING
        until its lease lapses (`advance` past `lease_seconds`), then it is taken over (a
        crashed attempt, retried if attempts are left) and resumes from its stored steps."""
        if when not in ("before", "after"):
            raise TestingError(f"crash_at: when must be 'before' or 'after'; got {when!r}")
        self.faults.add(Rule("crash", step_name(name, "crash_at"), self._task_id(task),
                             times_count(times, "crash_at"), when=when))

    def override_step(self, name: str, result: Any, *, times: int | None = None,
                      task: Task[Any, Any] | str | None = None) -> None:
        """Step `name` is not executed: `result` (a JSON value) is its result, stored as if its
        function returned it. Every time, or the next `times` times."""
        try:
            dumps_output(result, f"override_step({name!r}) result", None)
        except Exception as exc:
            raise TestingError(str(exc)) from None
        self.faults.add(Rule("override", step_name(name, "override_step"), self._task_id(task),
                             times_count(times, "override_step", allow_none=True), result=result))

    def clear_faults(self) -> None:
        """Forget every fault and override set so far."""
        self.faults.clear()

    def check_faults(self) -> None:
        """TestingError if a fault or override never matched a step that executed (a misspelt
        step name, or a step that is never reached); the tether_env fixture calls it after a
        test that passed."""
        unused = self.faults.unused()
        if unused:
            raise TestingError("\n".join(unused))

    # -- inside ---------------------------------------------------------------------------------
    def _task(self, task: Task[Any, Any] | str) -> Task[Any, Any]:
        tasks = self.app.tasks
        if isinstance(task, str):
            if task in tasks:
                return tasks[task]
            raise TestingError(f"unknown task {task!r}; the app's tasks: {', '.join(sorted(tasks))}")
        if isinstance(task, Task):
            if tasks.get(task.id) is task:
                return task
            raise TestingError(f"task {task.id!r} belongs to another app than this env's")
        name = getattr(task, "__name__", None)
        hint = f" (a function {name!r} not registered with @app.task?)" if callable(task) else ""
        raise TestingError(f"expected a task of the app or its id; got {task!r}{hint}")

    def _task_id(self, task: Task[Any, Any] | str | None) -> str | None:
        return None if task is None else self._task(task).id

    def _serve(self) -> None:
        self.worker.task_ids = [t for t in self.app.tasks if t not in self._held]

    def _chores(self) -> None:
        """What workers' housekeeping does once a second, done now."""
        storage, now = self.app.storage, self.clock.now()
        storage.expire_runs(now)
        reap(storage, now, [])  # the runs of crashed attempts whose lease lapsed
        storage.promote_delayed(now)
        storage.resolve_waits(now)
        self._scheduler.fire_due(now)

    def _execute(self) -> int:
        if not self.worker.task_ids:
            return 0
        if self._executing:
            raise TestingError("the env is executing runs already: call run, advance, "
                               "complete_token and drain from the test, not from a task's code")
        self._executing = True
        try:
            done = _run_coroutine(self.worker.run_until_idle())
        finally:
            self._executing = False
        self._check_crashes()
        return done

    def _check_crashes(self) -> None:
        """A crashed attempt must have stopped: TestingError if the task's code caught the
        crash and the attempt went on to an end of its own (a worker that died could not).
        Checked after the execution it happened in, before a lapsed lease could be reaped."""
        while self._crashes_checked < len(self.faults.crashed):
            run_id, attempt, key = self.faults.crashed[self._crashes_checked]
            self._crashes_checked += 1
            record = self.app.storage.get_run(run_id)
            if record is not None and record.status not in ("EXECUTING", "CANCELED"):
                raise TestingError(
                    f"run {run_id}: attempt {attempt} went on after crash_at stopped it at step "
                    f"{key!r} (the run is now {record.status}): the task's code caught the crash "
                    "(tether.testing.WorkerDied, a LeaseLost); let Tether's exceptions through "
                    "(catch the errors your own code raises, not every Exception)")

    def _next_moment(self) -> float | None:
        """The next time after now when something falls due."""
        storage, now = self.app.storage, self.clock.now()
        moments = [storage.next_ready_at(self.worker.task_ids, None, now)]
        moments += [s.next_run_at for s in storage.list_schedules() if s.active]
        if self.faults.crashed:
            crashed = sorted({run_id for run_id, _, _ in self.faults.crashed})
            moments += [r.lease_expires_at + EPSILON for r in storage.get_runs(crashed)
                        if r.status == "EXECUTING" and r.lease_expires_at is not None]
        later = [m for m in moments if m is not None and m > now]
        return min(later, default=None)


def _run_coroutine(coro: Coroutine[Any, Any, int]) -> int:
    """Run `coro` on an event loop of its own: here, or on a thread when this thread runs one
    already (an async test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[int] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="tether-testing")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
