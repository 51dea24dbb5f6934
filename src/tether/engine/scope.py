"""The state of one attempt of one run: its lease, its checkpoints (loaded once when the attempt
starts), and the buffered metadata and log lines. Both context flavours (async and sync) share it,
so step bookkeeping is written once."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tether.backpressure import back_pressure
from tether.clock import Clock
from tether.engine.backoff import retry_delay
from tether.engine.faults import Moment, StepHooks, WorkerDied
from tether.engine.leases import LeaseCheck
from tether.errors import LeaseLost, OnceInterrupted, ReplayMismatch, TetherError
from tether.limits import DEFAULT_MAX_SIZE
from tether.objects.references import Objects, is_reference, stored_text
from tether.objects.sweep import drop_replaced
from tether.options import Retry
from tether.serialization import dumps, dumps_input, dumps_output, loads, safe_text
from tether.storage.base import Storage
from tether.storage.pipeline import StepPipeline
from tether.storage.records import Flush, Lease, LogLine, RunRecord, StepRecord

if TYPE_CHECKING:
    import asyncio

    from tether.engine.gathering import Gathering
    from tether.engine.waits import Suspend
    from tether.storage.records import NewRun


class SegmentSpans(Protocol):
    """Where the durable calls of an execution segment leave their spans: the segment's
    RunTrace (observe/tracing.py), or in an isolated attempt's child process a record of them
    for the worker to make (isolation/child.py)."""

    def call(self, kind: str, key: str, started: float, ended: float, tries: int = 1,
             error: BaseException | None = None) -> None: ...

    def wait(self, name: str, kind: str, started: float, ended: float, earlier: bool,
             error: str | None = None) -> None: ...

    def child_trigger(self, task_id: str, queue: str, runs: list[NewRun]) -> Any: ...

current_scope: contextvars.ContextVar[RunScope | None] = contextvars.ContextVar(
    "tether_run_scope", default=None)

COMPLETED, STARTED, FAILED = "COMPLETED", "STARTED", "FAILED"


def error_dict(exc: BaseException) -> dict[str, Any]:
    return {"message": safe_text(str(exc) or type(exc).__name__),
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
            "traceback": safe_text("".join(traceback.format_exception(exc)))}


@dataclass
class Planned:
    key: str
    done: bool
    value: Any = None


class StepCall:
    """One call of `ctx.step` / `ctx.once`: the stored result if there is one, otherwise the
    bookkeeping around calling the function (start marker, in-place retries, result row).
    The async and sync contexts only differ in how they call and sleep."""

    def __init__(self, scope: RunScope, name: str, kind: str, retry: Retry | None) -> None:
        self.scope, self.name, self.kind, self.retry = scope, name, kind, retry
        self.tries = 1
        plan = scope.plan(name, kind)
        self.key, self.done, self.value = plan.key, plan.done, plan.value
        self.started_at = 0.0 if self.done else scope.started(self.key, name, kind)

    def target(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The function to call: `fn`, unless the attempt's step hooks (tether.testing) stand
        in for it."""
        hooks = self.scope.hooks
        if hooks is None or self.done:
            return fn
        return hooks.target(self.scope.record, self.key, self.name, self.kind, fn)

    def begin(self) -> None:
        """Right before each call of the function (the first, after a `once`'s start marker was
        written, and each retry in place): the lease must still be held by the worker's clock.
        Also on the first call of a `step`, right after `locate` checked: the replay check's
        scope (engine/replay.py) ends its replay here, before any step function is called."""
        self.scope.check()
        if self.scope.hooks is not None and self.tries == 1:
            self._maybe_die("before")

    def _maybe_die(self, moment: Moment) -> None:
        hooks = self.scope.hooks
        if hooks is not None and hooks.crash(self.scope.record, self.scope.lease.attempt,
                                             self.key, self.name, self.kind, moment):
            self.scope.dead = True  # nothing more of this attempt is written
            raise WorkerDied(self.scope.record.id, self.key, moment)

    def failed(self, exc: Exception) -> float:
        """The delay before trying again; re-raises `exc` once the step's retries are spent."""
        if self.retry is not None and self.tries < self.retry.max_attempts and not (
                self.scope.backs_off(exc)):
            self.tries += 1
            delay = retry_delay(self.retry, self.tries - 1)
            hooks = self.scope.hooks
            return delay if hooks is None else hooks.pause(delay)
        self.scope.failed(self.key, self.name, self.kind, exc, self.started_at)
        if self.scope.trace is not None:
            self.scope.trace.call(self.kind, self.key, self.started_at, self.scope.clock.now(),
                                  self.tries, exc)
        raise exc

    def completed(self, value: Any) -> None:
        if self.scope.hooks is not None:
            self._maybe_die("after")
        self.value = self.scope.completed(self.key, self.name, self.kind, value, self.started_at)
        self.done = True
        if self.scope.trace is not None:
            self.scope.trace.call(self.kind, self.key, self.started_at, self.scope.clock.now(),
                                  self.tries)


class Metadata(dict[str, Any]):
    """A dict whose changes are persisted with the next step, or within a second."""

    def __init__(self, initial: dict[str, Any], scope: RunScope) -> None:
        super().__init__(initial)
        self._scope = scope

    def _touch(self) -> None:
        self._scope.metadata_dirty = True

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._touch()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._touch()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._touch()

    def pop(self, *args: Any) -> Any:
        value = super().pop(*args)
        self._touch()
        return value

    def clear(self) -> None:
        super().clear()
        self._touch()

    def increment(self, key: str, by: float = 1) -> float:
        """Add `by` to the number at `key` (0 when missing) and return the sum."""
        value: float = self.get(key, 0) + by
        self[key] = value
        return value


class RunScope:
    def __init__(self, storage: Storage, clock: Clock, record: RunRecord, lease: Lease,
                 steps: dict[str, StepRecord]) -> None:
        self.storage = storage
        self.clock = clock
        self.record = record
        self.lease = lease
        self.steps = steps
        self.by_seq = {s.seq: s for s in steps.values() if s.seq is not None}
        self.position = 0  # how many durable calls this pass of the code has reached
        # the code replays stored calls until it reaches the last one: its log lines were
        # recorded by an earlier pass, so they are not recorded again
        self.replay_until = max((seq for seq in self.by_seq if seq is not None), default=0)
        self.seqs: dict[str, int] = {}
        self.occurrences: dict[str, int] = {}
        self.patches: dict[str, bool] = {}  # the patch decisions of this pass (engine/patches.py)
        self.state: Any = loads(record.state)
        self.stored_state = record.state  # as stored: a reference when the state is large
        self.metadata = Metadata(loads(record.metadata) or {}, self)
        self.metadata_dirty = False
        self.logs: list[LogLine] = []
        self.lock = threading.Lock()
        self.dead = False  # set when the attempt ended from outside (timeout, cancel, lost lease)
        self.app: Any = None  # the Tether app (children are triggered through it)
        self.inline_sleep = 1.0  # sleeps up to this long stay in process instead of parking
        self.wait_step: StepRecord | None = None  # the row of the wait that parked the run
        self.leases: LeaseCheck | None = None  # the worker's own clock for its leases
        # step rows written behind the attempt's back (PostgreSQL); None: each save waits
        self.pipeline: StepPipeline | None = storage.pipeline
        self.trace: SegmentSpans | None = None  # this segment's spans; None: tracing is off
        self.hooks: StepHooks | None = None  # fault injection (tether.testing); None: none
        # the task's @app.task(respect_retry_after=...): HTTP 429/503 errors are back-pressure
        self.respect_retry_after = False
        # back-pressure's pause of the run's key (queue, key, until, reason), set when the
        # attempt ends that way: written before the attempt's end
        self.pause: tuple[str, str, float, str] | None = None
        # several waits at once (engine/gathering.py): the task running the body (async tasks;
        # None: every wait parks alone, at once), the durable work in flight that awaits (steps,
        # in-process sleeps: how many per task), the held waits, and the gather the run parked
        # on (its Suspend)
        self.main_task: asyncio.Task[Any] | None = None
        self.busy: dict[asyncio.Task[Any] | None, int] = {}
        self.gathering: Gathering | None = None
        self.parked: Suspend | None = None

    def backs_off(self, exc: BaseException) -> bool:
        """Whether `exc` is back-pressure (RetryAfter, or an HTTP 429/503 with Retry-After when
        the task respects it): the run comes back later, so a step does not retry it in place."""
        return back_pressure(exc, self.respect_retry_after, self.clock.now()) is not None

    def check(self) -> None:
        """Before any work of this attempt: the attempt is alive and, by the worker's own clock,
        still holds its lease (LeaseLost otherwise: nothing more of it may start)."""
        if self.dead:
            raise LeaseLost(self.lease.run_id)
        if self.leases is not None and not self.leases.confirm(self.lease):
            self.dead = True
            raise LeaseLost(self.lease.run_id)
        if self.pipeline is not None:
            failure = self.pipeline.failure(self.lease)
            if failure is not None:  # a row of this attempt was refused (lease lost) or lost
                self.dead = True
                raise failure

    # -- steps --------------------------------------------------------------------------------
    def locate(self, name: str) -> tuple[str, StepRecord | None]:
        """The key of this durable call (`name`, `name#2`, ... by occurrence) and its stored
        row. The code must reach stored calls in the order it first did: a different call at a
        stored position means the code changed under the run."""
        if self.dead:
            raise LeaseLost(self.lease.run_id)
        if self.parked is not None:  # parked on a gather: no durable call runs after (the code
            raise self.parked.again()  # went on: a gather that returned its exceptions)
        n = self.occurrences.get(name, 0) + 1
        self.occurrences[name] = n
        key = name if n == 1 else f"{name}#{n}"
        self.position += 1
        self.seqs[key] = self.position
        there = self.by_seq.get(self.position)
        if there is not None and there.key != key:
            raise ReplayMismatch(key, f"durable call #{self.position} was {there.key!r} and is "
                                      f"now {key!r}")
        stored = self.steps.get(key)
        if stored is not None and stored.seq is not None and stored.seq != self.position:
            raise ReplayMismatch(key, f"{key!r} was durable call #{stored.seq} and is now "
                                      f"#{self.position}")
        return key, stored

    def row(self, key: str, name: str, kind: str, status: str, output: str | None,
               error: str | None, started_at: float, finished_at: float | None) -> StepRecord:
        return StepRecord(key, name, kind, status, output, error, self.lease.attempt, started_at,
                          finished_at, self.seqs.get(key))

    def save(self, step: StepRecord) -> None:
        """Store a row of this attempt. Through a pipeline, the result of an at-least-once step is
        queued and not waited for (lost, the step runs again); any other row (a `once` start
        marker or result, a wait, a patch) waits until it and every row before it are on disk."""
        if self.pipeline is None:
            self.storage.save_step(self.lease, step, self.take_flush())
        else:
            # (a lost `acquire` row only means taking from the limit again: not waited for)
            durable = step.kind not in ("step", "acquire")
            self.pipeline.send(self.lease, step, self.take_flush(), durable=durable)
            if durable:
                self.drain()
        self.steps[step.key] = step

    def drain(self) -> None:
        """Before a write that does not go through the pipeline (a checkpoint, a token, child
        runs) or the end of the attempt: every row queued so far is on disk, so nothing stored
        after it can be there without them. LeaseLost if one was refused."""
        if self.pipeline is not None:
            try:
                self.pipeline.drain(self.lease)
            except BaseException:
                self.dead = True
                raise

    def plan(self, name: str, kind: str) -> Planned:
        key, stored = self.locate(name)
        if stored is None or stored.status == FAILED:
            return Planned(key, False)
        if stored.status == COMPLETED:
            return Planned(key, True, loads(stored.output))
        if kind == "once":
            raise OnceInterrupted(key)
        return Planned(key, False)  # a `step` whose earlier start never finished: run it again

    def started(self, key: str, name: str, kind: str) -> float:
        now = self.clock.now()
        if kind == "once":
            self.save(self.row(key, name, kind, STARTED, None, None, now, None))
        return now

    def objects(self) -> Objects | None:
        """The app's object store for large values (None for an app without one)."""
        objects: Objects | None = getattr(self.app, "objects", None)
        return objects

    def limit(self, setting: str) -> int:
        """The app's max_payload_size or max_output_size."""
        return int(getattr(self.app, setting, DEFAULT_MAX_SIZE))

    def completed(self, key: str, name: str, kind: str, value: Any, started_at: float) -> Any:
        text = dumps_output(value, f"the result of step {key!r}", self.limit("max_output_size"))
        kept = stored_text(text, self.objects(), self.record.id)  # large: the object first
        self.save(self.row(key, name, kind, COMPLETED, kept, None, started_at, self.clock.now()))
        return json.loads(text)

    def failed(self, key: str, name: str, kind: str, exc: BaseException, started_at: float) -> None:
        self.save(self.row(key, name, kind, FAILED, None, dumps(error_dict(exc)), started_at,
                              self.clock.now()))

    def checkpoint(self, state: Any) -> None:
        self.check()
        text = dumps_output(state, "checkpoint state", self.limit("max_output_size"))
        kept = stored_text(text, self.objects(), self.record.id)
        self.drain()
        self.storage.save_state(self.lease, kept, self.take_flush())
        self.state = json.loads(text)
        replaced, self.stored_state = self.stored_state, kept
        if replaced is not None and replaced != kept and is_reference(replaced):
            drop_replaced(replaced)

    # -- buffered writes ----------------------------------------------------------------------
    def add_log(self, record: logging.LogRecord) -> None:
        if self.position < self.replay_until:
            return
        line = LogLine(record.created, self.lease.attempt, record.levelname,
                       safe_text(record.getMessage()), record.name)
        with self.lock:
            self.logs.append(line)

    def take_flush(self) -> Flush | None:
        if not self.metadata_dirty and not self.logs:
            return None
        with self.lock:
            flush = Flush(self._metadata_json() if self.metadata_dirty else None, self.logs)
            self.logs = []
            self.metadata_dirty = False
        return flush

    def _metadata_json(self) -> str | None:
        """The metadata's JSON; None when it cannot be stored (too large, too deep, not JSON):
        the stored metadata stays as it was and the run's log says why."""
        try:
            return dumps_input(dict(self.metadata), "metadata", self.limit("max_payload_size"),
                               self.objects(), self.record.id)
        except TetherError as exc:
            self.logs.append(LogLine(self.clock.now(), self.lease.attempt, "ERROR",
                                     f"metadata not saved: {exc}", "tether"))
            return None

    def flush_now(self) -> None:
        flush = self.take_flush()
        if flush and self.pipeline is not None:
            self.pipeline.send(self.lease, None, flush)  # in order with the step rows
        elif flush:
            self.storage.flush(self.lease, flush)


class RunLogHandler(logging.Handler):
    """Attaches log records emitted while a run executes (in its task or thread) to that run."""

    def emit(self, record: logging.LogRecord) -> None:
        scope = current_scope.get()
        if scope is not None and not scope.dead:
            scope.add_log(record)


_installed = threading.Lock()
_handler: RunLogHandler | None = None


def install_log_handler() -> None:
    global _handler
    with _installed:
        if _handler is None:
            _handler = RunLogHandler(level=logging.DEBUG)
            logging.getLogger().addHandler(_handler)
            logging.getLogger("tether.run").setLevel(logging.INFO)
