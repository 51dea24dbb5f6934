"""The replay check (`app.check_replay`, `tether check`): run the new code of each unfinished run
against its stored history, without executing anything, to learn before a deploy which runs the
new code would fail.

A replay uses a `ReplayScope`: every durable call returns its stored result; the first call with
no stored row (or one that would run a step's function, write a row, park or trigger) ends the
replay with `StopReplay`: the run is fine up to there. A different call at a stored position is a
`ReplayMismatch`: the run would fail. Storage is wrapped so that only reads get through: nothing
is written, nothing is triggered, no step function is called. Code between durable calls does
run, as it does on every resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tether.engine.context import Context, SyncContext
from tether.engine.current import running
from tether.engine.scope import RunScope
from tether.engine.waits import Suspend
from tether.errors import ConfigurationError, OnceInterrupted, ReplayMismatch
from tether.models import RunStatus
from tether.serialization import dumps_output, loads
from tether.storage.base import Storage
from tether.storage.pipeline import StepPipeline
from tether.storage.records import Lease, RunFilter, RunRecord, StepRecord

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

OK, WOULD_FAIL, CANNOT_CHECK = "ok", "would_fail", "cannot_check"
UNFINISHED = [RunStatus.DELAYED, RunStatus.QUEUED, RunStatus.EXECUTING, RunStatus.WAITING]
RETRYABLE = [RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELED]  # what runs.retry takes
PAGE = 500  # runs read (and their steps loaded) at a time
TIME_LIMIT = 10.0  # seconds one run's replay may take (its code between durable calls runs)

# what a stored row's kind is called in the code; and the names waits give their calls
CALLS = {"token": "create_token", "wait_token": "wait_for_token", "trigger": "trigger",
         "trigger_wait": "trigger_and_wait", "batch_wait": "batch_trigger_and_wait"}
WAIT_NAMES = {"create_token": "token", "wait_for_token": "wait_token"}
TRIGGER_LABELS = {"trigger": "trigger", "trigger_and_wait": "trigger_wait",
                  "batch_trigger_and_wait": "batch_wait"}


class StopReplay(BaseException):
    """Ends a replay where the stored history ends: the code asked for something not stored (a
    step to run, a row to write, a wait to park on). A BaseException, so that `except Exception`
    in task code does not catch it."""


class ReadOnlyStorage:
    """The run's storage for a replay: reads go through; any other call ends the replay."""

    pipeline: StepPipeline | None = None  # nothing is written behind the replay's back

    READS = frozenset({"get_run", "get_runs", "get_token", "get_task", "list_tasks", "list_runs",
                       "load_steps", "load_steps_many", "get_schedule", "list_tokens"})

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.refused = False  # a write was asked for: the replay ended there

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in self.READS or not callable(value):
            return value

        def refused(*args: Any, **kwargs: Any) -> Any:
            self.refused = True
            raise StopReplay(f"would call storage.{name}")

        return refused


def _described(kind: str, key: str) -> str:
    """A durable call as the code writes it: `step "render"`, `trigger_and_wait "child"`."""
    label = CALLS.get(kind, kind)
    if kind in TRIGGER_LABELS.values() or kind == "acquire":
        return f'{label} "{key.split(":", 1)[-1]}"'
    if kind in ("token", "wait_token"):
        return label
    return f'{label} "{key}"'


def _kind_of(name: str) -> str:
    """The kind of a call known only by the name it locates (waits)."""
    if name in WAIT_NAMES:
        return WAIT_NAMES[name]
    label = name.split(":", 1)[0]
    if label == "acquire" and ":" in name:
        return "acquire"  # (engine/acquire.py: "acquire:<limit>")
    return TRIGGER_LABELS.get(label, "sleep") if ":" in name else "sleep"


class Mismatch(Exception):
    """The new code reached another durable call than the stored one at a position."""


class ReplayScope(RunScope):
    """A RunScope that only returns stored results (see the module's docstring)."""

    def __init__(self, storage: Storage, app: Tether, record: RunRecord,
                 steps: dict[str, StepRecord]) -> None:
        lease = Lease(record.id, "replay", max(record.attempts, 1), "replay")
        self.reads = ReadOnlyStorage(storage)
        super().__init__(self.reads, app.clock, record, lease, steps)
        self.app = app
        self.inline_sleep = -1.0  # no sleep waits in process: a sleep not over parks, i.e. stops
        self._kind: str | None = None
        self.stopped = False  # the replay ended (task code that swallows StopReplay goes no further)

    def stop(self, reason: str) -> StopReplay:
        self.stopped = True
        return StopReplay(reason)

    def check(self) -> None:
        raise self.stop("a step's function would be called")

    def plan(self, name: str, kind: str) -> Any:
        self._kind = kind
        try:
            return super().plan(name, kind)
        finally:
            self._kind = None

    def locate(self, name: str) -> tuple[str, StepRecord | None]:
        if self.stopped or self.reads.refused:
            raise StopReplay("the replay ended")
        position = self.position + 1
        there = self.by_seq.get(position)
        kind = self._kind or _kind_of(name)
        try:
            key, stored = super().locate(name)
        except ReplayMismatch as exc:
            now = _described(kind, exc.step)
            if there is not None and there.key != exc.step:
                raise Mismatch(f"position {position}: stored {_described(there.kind, there.key)}, "
                               f"code now calls {now}") from exc
            seq = self.steps[exc.step].seq
            raise Mismatch(f"position {position}: code now calls {now}, stored at position "
                           f"{seq}") from exc
        if stored is None:
            raise self.stop(f"no stored row for {key!r}")
        return key, stored

    def save(self, step: StepRecord) -> None:
        raise self.stop(f"would store {step.key!r}")

    def checkpoint(self, state: Any) -> None:
        self.state = loads(dumps_output(state, "checkpoint state", self.limit("max_output_size")))

    def flush_now(self) -> None:
        pass


@dataclass
class RunCheck:
    """One run's verdict: "ok", "would_fail" or "cannot_check", and why."""

    run_id: str
    task: str
    status: str
    verdict: str
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplayReport:
    """What `app.check_replay()` found: one `RunCheck` per run, newest first."""

    runs: list[RunCheck] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, verdict: str) -> int:
        """How many runs got this verdict ("ok", "would_fail", "cannot_check")."""
        return sum(1 for run in self.runs if run.verdict == verdict)

    @property
    def passed(self) -> bool:
        """True when every run checked replays on the new code."""
        return all(run.verdict == OK for run in self.runs)

    @property
    def problems(self) -> list[RunCheck]:
        """The runs that would fail or cannot be checked."""
        return [run for run in self.runs if run.verdict != OK]

    def summary(self) -> str:
        """`412 runs checked in 0.3 s: 409 ok, 3 would fail`."""
        parts = [f"{self.count(OK)} ok"]
        for verdict in (WOULD_FAIL, CANNOT_CHECK):
            if self.count(verdict):
                parts.append(f"{self.count(verdict)} {verdict.replace('_', ' ')}")
        noun = "run" if len(self.runs) == 1 else "runs"
        return f"{len(self.runs)} {noun} checked in {self.seconds:.1f} s: {', '.join(parts)}"


def _error_text(exc: BaseException) -> str:
    kind = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", "tether.errors"):
        kind = f"{type(exc).__module__}.{kind}"
    return f"{kind}: {exc}" if str(exc) else kind


def _invalid(task: Task[Any, Any], record: RunRecord) -> str | None:
    """The payload's problem as a trigger would say it."""
    try:
        task.validate(loads(record.payload))
    except Exception as exc:
        return str(exc)
    return None


class Replayer:
    """Replays runs of one app's code, one at a time, on one event loop."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.storage = app.storage
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def check(self, record: RunRecord, steps: dict[str, StepRecord]) -> RunCheck:
        def verdict(value: str, detail: str | None = None) -> RunCheck:
            return RunCheck(record.id, record.task_id, record.status, value, detail)

        task = self.app.tasks.get(record.task_id)
        if task is None:
            return verdict(CANNOT_CHECK, f"task {record.task_id!r} is not in the code")
        try:
            payload = task.parse(loads(record.payload))
        except Exception as exc:
            why = _invalid(task, record) or _error_text(exc)
            return verdict(CANNOT_CHECK, f"payload no longer validates: {why}")
        if not steps and record.state is None:
            return verdict(OK)  # nothing stored to replay against
        scope = ReplayScope(self.storage, self.app, record, steps)
        try:
            self._run(task, payload, scope)
        except (StopReplay, Suspend, OnceInterrupted):
            return verdict(OK)
        except Mismatch as exc:
            return verdict(WOULD_FAIL, str(exc))
        except _TooLong:
            return verdict(CANNOT_CHECK, f"the replay took longer than {TIME_LIMIT:g} s")
        except Exception as exc:
            if scope.stopped or scope.reads.refused:  # the code turned StopReplay into this
                return verdict(OK)
            return verdict(WOULD_FAIL, f"position {scope.position}: the code raised "
                                       f"{_error_text(exc)}")
        return verdict(OK)

    def _run(self, task: Task[Any, Any], payload: Any, scope: ReplayScope) -> Any:
        if not task.is_async:
            sctx = SyncContext(scope, task.id, None)
            with running(sctx):  # current_sync_context() as in a worker
                return task.fn(*((payload, sctx) if task.takes_ctx else (payload,)))
        ctx = Context(scope, task.id, self.loop)
        with running(ctx):  # current_context() as in a worker (the loop's task copies it)
            coro = task.fn(*((payload, ctx) if task.takes_ctx else (payload,)))
            return self.loop.run_until_complete(_limited(coro))


class _TooLong(Exception):
    pass


async def _limited(coro: Any) -> Any:
    timeout = asyncio.timeout(TIME_LIMIT)
    try:
        async with timeout:
            return await coro
    except TimeoutError:
        if timeout.expired():
            raise _TooLong() from None
        raise


def _pages(storage: Storage, flt: RunFilter) -> Iterator[list[RunRecord]]:
    while True:
        page = storage.list_runs(flt)
        if page:
            yield page
        if len(page) < flt.limit:
            return
        flt.before_id = page[-1].id


def check_replay(app: Tether, task: str | None = None,
                 status: list[str] | str | None = None,
                 include_failed: bool = False) -> ReplayReport:
    """See `Tether.check_replay`."""
    began = time.perf_counter()
    wanted = [status] if isinstance(status, str) else list(status or UNFINISHED)
    statuses = [str(RunStatus(s.upper())) for s in wanted]
    if include_failed:
        statuses += [str(s) for s in RETRYABLE if str(s) not in statuses]
    storage = app.storage
    pending = storage.pending_migrations()  # before any other call, which would apply them
    if pending:
        raise ConfigurationError(
            f"the database lacks this code's migrations ({', '.join(pending)}); the check writes "
            "nothing, so it does not apply them: run `tether db upgrade` first (migrations go "
            "before the code that needs them), then check again")
    flt = RunFilter(status=statuses, task_id=[task] if task else None, limit=PAGE)
    report = ReplayReport()
    replayer = Replayer(app)
    try:
        for page in _pages(storage, flt):
            steps = storage.load_steps_many([record.id for record in page])
            report.runs += [replayer.check(record, steps.get(record.id, {})) for record in page]
    finally:
        replayer.close()
    report.seconds = time.perf_counter() - began
    return report
