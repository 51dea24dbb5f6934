"""`app.runs`: reading and managing runs. The CLI (and later the HTTP API) call these same methods."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tether import forks
from tether.durations import Duration, until
from tether.engine import states
from tether.errors import ConfigurationError, InvalidTransition, RunNotFound
from tether.handles import RunHandle
from tether.models import Run, RunStatus, TraceEvent
from tether.serialization import loads
from tether.storage.records import AttemptRecord, RunFilter, RunRecord
from tether.storage.retention import PurgeRule
from tether.trace import build_trace

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.moves import MigrateReport


def _as_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


_SAME: Any = object()  # replay: keep the original payload


class Runs:
    """`app.runs`: read and manage the runs stored in the app's database."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def _get(self, run_id: str) -> RunRecord:
        record = self._app.storage.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    def retrieve(self, run_id: str) -> Run:
        """The run with this id; RunNotFound if there is none."""
        return self._get(run_id).to_run()

    def handle(self, run_id: str) -> RunHandle[Any]:
        """A handle to wait for an existing run's result (`handle(run_id).result()`)."""
        self._get(run_id)
        return RunHandle(self._app.storage, run_id)

    def list(self, *, status: str | list[str] | None = None, task: str | list[str] | None = None,
             tag: str | list[str] | None = None, queue: str | list[str] | None = None,
             limit: int = 25, before: str | None = None) -> list[Run]:
        """Runs, newest first. `before` is a run id: list runs created before it (paging)."""
        statuses = _as_list(status)
        if statuses:
            statuses = [RunStatus(s.upper()).value for s in statuses]
        flt = RunFilter(status=statuses, task_id=_as_list(task), tag=_as_list(tag),
                        queue=_as_list(queue), before_id=before, limit=page_limit(limit))
        return [r.to_run() for r in self._app.storage.list_runs(flt)]

    def trace(self, run_id: str) -> builtins.list[TraceEvent]:
        """The run's history in time order: status changes, attempts, steps, waits, child runs
        and logs."""
        record = self._get(run_id)
        storage = self._app.storage
        attempts = storage.list_attempts(run_id)
        if record.status == RunStatus.EXECUTING and record.attempt_started_at is not None:
            attempts.append(AttemptRecord("current", run_id, record.attempts, record.worker_id,
                                          "EXECUTING", record.attempt_started_at, None, None))
        return build_trace(record, attempts, storage.load_steps(run_id), storage.list_events(run_id))

    def cancel(self, run_id: str, reason: str = "canceled") -> Run:
        """Cancel a run that has not finished. An executing run stops at its next await."""
        record = self._get(run_id)
        if RunStatus(record.status).is_final:
            raise InvalidTransition(f"run {run_id} already ended {record.status}; nothing to cancel")
        run = self._apply(run_id, states.canceled(reason))  # storage wakes worker and waiters
        self._cancel_children(run_id)
        return run

    def children(self, run_id: str, limit: int = 1000) -> builtins.list[Run]:
        """The runs this run triggered (`ctx.trigger...`), newest first."""
        flt = RunFilter(parent_id=run_id, limit=limit)
        return [r.to_run() for r in self._app.storage.list_runs(flt)]

    def _cancel_children(self, parent_id: str, depth: int = 0) -> None:
        """Cancel the unfinished descendants of a canceled run."""
        if depth > 100:
            return
        for child in self._app.storage.list_runs(RunFilter(parent_id=parent_id, limit=10_000)):
            if not RunStatus(child.status).is_final:
                self._app.storage.transition(
                    child.id, states.canceled(f"parent run {parent_id} was canceled"),
                    self._app.clock.now())
            self._cancel_children(child.id, depth + 1)

    def replay(self, run_id: str, payload: Any = _SAME, **overrides: Any) -> RunHandle[Any]:
        """A new run with the same task, payload, tags, metadata and options; `payload` and any
        trigger option given (`tags=`, `delay=`, `queue=`, ...) replace the original's."""
        record = self._get(run_id)
        options: dict[str, Any] = {**forks.same_options(record), **overrides}
        value = loads(record.payload) if payload is _SAME else payload
        return self._app.trigger(record.task_id, value, **options)

    def fork(self, run_id: str, *, from_step: str) -> RunHandle[Any]:
        """A new run like `replay`'s (same task, payload and options) that keeps the stored
        results of the durable calls before `from_step` (a stored call's key, `charge#2`, or
        name): its first attempt returns them without calling anything and executes from
        `from_step` on. Any run may be forked, even one still executing; it is left as it is.
        StepNotFound if the run stored no such call. The new run's metadata names its origin
        (`tether.forked_from`), and its trace starts with a FORKED event."""
        return forks.fork(self._app, self._get(run_id), from_step)

    def migrate(self, run_ids: builtins.list[str] | None = None, *,
                from_version: str | None = None, to_version: str | None = None,
                status: builtins.list[str] | str | None = None) -> MigrateReport:
        """Move runs onto this app's code version (or `to_version`): the runs `run_ids`, or
        every unfinished run (or in `status`) on `from_version`. Each one's stored history is
        first replayed against this app's code (as `check_replay` does); a run that passes is
        re-pinned, one that does not is refused with the reason and left as it was."""
        from tether.moves import migrate

        return migrate(self._app, run_ids, from_version=from_version, to_version=to_version,
                       status=status)

    def retry(self, run_id: str) -> Run:
        """Re-open a FAILED, TIMED_OUT or CANCELED run for one more attempt. Completed steps keep
        their results; `once` steps that were interrupted are re-armed (a person decided)."""
        record = self._get(run_id)
        if record.status not in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELED):
            raise InvalidTransition(
                f"run {run_id} is {record.status}; only FAILED, TIMED_OUT or CANCELED runs retry")
        rearmed = self._app.storage.reset_once_steps(run_id)
        reason = "retry requested" + (f"; re-armed once steps {rearmed}" if rearmed else "")
        return self._apply(run_id, states.reopened(self._app.clock.now(), reason))

    def purge(self, *, older_than: Duration, status: str | builtins.list[str] | None = None,
              task: str | builtins.list[str] | None = None, dry_run: bool = False) -> int:
        """Delete the finished runs (COMPLETED, FAILED, CANCELED, TIMED_OUT, EXPIRED; or those of
        `status`) of any task (or of `task`) that finished more than `older_than` ago, with
        their attempts, steps, events, logs, tokens and batch items; returns how many. A
        finished child whose parent has not finished is kept. Runs go a few thousand per short
        transaction, so workers keep working meanwhile. `dry_run`: count, delete nothing."""
        from tether.retention import purge, retention_setting, statuses_of

        age = retention_setting(older_than, "older_than")
        if age is None:
            raise ConfigurationError("older_than is required, e.g. '7d'")
        tasks = _as_list(task)
        rule = PurgeRule(self._app.clock.now() - age, statuses=statuses_of(status),
                         tasks=None if not tasks else frozenset(tasks))
        return purge(self._app.storage, rule, dry_run, app=self._app)

    def reschedule(self, run_id: str, delay: Duration | datetime) -> Run:
        """Move a DELAYED run's start to `delay` from now (or to a datetime)."""
        record = self._get(run_id)
        if record.status != RunStatus.DELAYED:
            raise InvalidTransition(f"run {run_id} is {record.status}; only DELAYED runs reschedule")
        when = until(delay, self._app.clock.now(), "delay")
        return self._apply(run_id, states.rescheduled(when), expect=RunStatus.DELAYED)

    def _apply(self, run_id: str, transition: states.Transition, expect: str | None = None) -> Run:
        updated = self._app.storage.transition(run_id, transition, self._app.clock.now(), expect)
        if updated is None:
            current = self._get(run_id)
            raise InvalidTransition(
                f"run {run_id} is {current.status}; cannot move it to {transition.to}")
        return updated.to_run()


def page_limit(limit: int) -> int:
    """A page of 1 to 1000 runs; anything else is a clear error, not a silent page of one."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ConfigurationError(f"limit must be a whole number from 1 to 1000, got {limit!r}")
    return limit
