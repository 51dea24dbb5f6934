"""What the worker and a child process send each other over their pipe (pickled by
multiprocessing.connection):

- child -> worker: READY once the app is imported, or `Failed(message)`; then one `Ended` per
  job; during a job, CONFIRM when the lease's time by the worker's clock has passed (the
  worker answers with a new time, a float: time.monotonic(), the same clock in both processes;
  0.0: the lease is not held any more).
- worker -> child: a `Job`, and the answers to CONFIRM.

A child that dies (killed, a signal, an exit) is a `Died` on the worker's side.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from tether.engine import states, verdicts
from tether.engine.scope import RunScope, SegmentSpans
from tether.errors import LeaseLost
from tether.serialization import dumps
from tether.storage.records import Lease, NewRun, RunRecord, StepRecord

READY = "ready"
CONFIRM = "confirm"

PROCESS_DIED = "tether.ProcessDied"  # the run's error type when an attempt's process died
MEMORY_LIMIT = "tether.MemoryLimitExceeded"  # ... when it allocated past memory_limit


@dataclass
class Failed:
    """The child could not start (its app failed to import, ...)."""

    message: str


SpanRecord = tuple[str, tuple[Any, ...]]  # ("call" | "wait", the RunTrace method's arguments)


class SpanLog:
    """In a child: the spans of the attempt's durable calls, recorded for the worker, whose
    RunTrace makes them (after the fact, as it makes its own) once the attempt ended."""

    def __init__(self, context: str | None = None) -> None:
        self.spans: list[SpanRecord] = []
        self.context = context  # the attempt's span in the worker, as stored

    def call(self, kind: str, key: str, started: float, ended: float, tries: int = 1,
             error: BaseException | None = None) -> None:
        failure = None if error is None else (type(error).__name__, str(error))
        self.spans.append(("call", (kind, key, started, ended, tries, failure)))

    def wait(self, name: str, kind: str, started: float, ended: float, earlier: bool,
             error: str | None = None) -> None:
        self.spans.append(("wait", (name, kind, started, ended, earlier, error)))

    def child_trigger(self, task_id: str, queue: str, runs: list[NewRun]) -> None:
        """Child runs join the trace under the attempt's span (without a span of their
        trigger: that one the worker cannot make after the fact)."""
        for new in runs:
            new.trace_context = self.context


_error_types: dict[str, type[Exception]] = {}


def _remote_error(name: str, message: str) -> Exception:
    """An exception named as the child's was (spans show the type's name and the message)."""
    kind = _error_types.get(name)
    if kind is None:
        kind = _error_types[name] = type(name, (Exception,), {"__module__": __name__})
    return kind(message)


def replay_spans(trace: SegmentSpans, spans: list[SpanRecord]) -> None:
    """Make the spans a child recorded, on the worker's RunTrace of the segment."""
    for method, args in spans:
        if method == "call":
            kind, key, started, ended, tries, failure = args
            error = None if failure is None else _remote_error(*failure)
            trace.call(kind, key, started, ended, tries, error)
        elif method == "wait":
            trace.wait(*args)


@dataclass
class Job:
    """One attempt for a child: the run as claimed, its lease and the steps stored before."""

    task_id: str
    record: RunRecord
    lease: Lease
    steps: dict[str, StepRecord]
    until: float  # the lease is valid until then by the worker's clock (time.monotonic())
    memory_limit: int | None = None  # bytes the attempt may add to the child's address space
    traced: bool = False  # the worker traces the segment: record the spans of durable calls
    trace_context: str | None = None  # the segment's span, as stored, for child runs


@dataclass
class Ended:
    """The attempt's code ended in the child; its rows are on disk (metadata and logs too)."""

    transition: states.Transition | None  # None: the lease was lost (nothing to store)
    wait_step: StepRecord | None = None  # the row of the wait that parks the run
    steps: list[StepRecord] = field(default_factory=list)  # rows it wrote (outputs left out)
    retire: bool = False  # the child should be replaced (it ran out of its memory limit)
    spans: list[SpanRecord] = field(default_factory=list)  # with Job.traced

    def transition_for(self, scope: RunScope, now: float) -> states.Transition:
        if scope.trace is not None:
            replay_spans(scope.trace, self.spans)
        if self.transition is None:
            scope.dead = True
            raise LeaseLost(scope.lease.run_id)
        scope.wait_step = self.wait_step
        for step in self.steps:
            scope.steps[step.key] = step
        return self.transition


@dataclass
class Died:
    """The child process ended during the attempt (or could not start): the attempt failed,
    and is retried as its retry policy says."""

    message: str

    def transition_for(self, scope: RunScope, now: float) -> states.Transition:
        return verdicts.failed(scope, dumps({"message": self.message, "type": PROCESS_DIED}), now)


def exit_reason(returncode: int | None) -> str:
    """How a child process ended, for the run's error: `died of SIGSEGV (signal 11)`."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        else:
            name = f"{name} (signal {-returncode})"
        hint = "; the kernel kills a process this way when memory runs out" \
            if returncode == -signal.SIGKILL else ""
        return f"died of {name}{hint}"
    return f"exited with status {returncode}"


def shown_size(size: int) -> str:
    """Bytes as the user likely wrote them: 2GB, 512MiB, else the number of bytes."""
    for unit, factor in (("GB", 1000**3), ("GiB", 1024**3), ("MB", 1000**2), ("MiB", 1024**2),
                         ("KB", 1000), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size:,} bytes"
