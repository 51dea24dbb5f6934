"""What an attempt's code ending means for its run: the transition for a return value, for each
kind of exception, and for running past `max_duration`. Shared by the attempt runner (code in
the worker's process) and the child processes of isolated tasks (tether/isolation/child.py), so
both decide alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.engine import states
from tether.engine.scope import RunScope, error_dict
from tether.engine.waits import Suspend
from tether.errors import AbortRun, OnceInterrupted, SerializationError
from tether.options import Retry
from tether.serialization import dumps, dumps_output, loads

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task


def unparsable(exc: Exception) -> states.Transition:
    """The stored payload no longer validates against the task's model: not retried."""
    return states.aborted(dumps(error_dict(exc)), "payload no longer validates")


def succeeded(app: Tether, task: Task[Any, Any], scope: RunScope, output: Any) -> states.Transition:
    """The task returned `output` (SerializationError when it cannot be stored)."""
    return states.succeeded(dumps_output(output, f"the return value of task {task.id!r}",
                                         app.max_output_size, app.objects, scope.record.id))


def raised(scope: RunScope, exc: Exception | Suspend, now: float) -> states.Transition:
    """The task's code raised `exc` (LeaseLost and cancellation are the caller's)."""
    if isinstance(exc, Suspend):
        scope.wait_step = exc.step
        return states.suspended(exc.until, exc.waiting_for, exc.reason)
    if isinstance(exc, AbortRun | OnceInterrupted):
        return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc}")
    if isinstance(exc, SerializationError):
        # a value the code produced cannot be stored: another attempt would produce it again
        return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc} "
                                                      "(not retried: it would fail again)")
    return failed(scope, dumps(error_dict(exc)), now)


def failed(scope: RunScope, error_json: str, now: float) -> states.Transition:
    """The attempt failed with `error_json`: retried after its backoff while attempts are left."""
    record = scope.record
    policy = Retry.from_dict(loads(record.retry))
    return states.attempt_failed(attempt=scope.lease.attempt, max_attempts=record.max_attempts,
                                 policy=policy, error_json=error_json, now=now)


def timed_out(limit: float) -> states.Transition:
    """The attempt ran past the run's `max_duration`."""
    error = {"message": f"run exceeded max_duration of {limit:g}s", "type": "tether.TimedOut"}
    return states.timed_out(dumps(error), limit)
