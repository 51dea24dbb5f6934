"""A task's `on_success` / `on_failure` hook for a run that ended: called with the run's payload,
its output or error, and a context of the ended attempt (its writes refused: the lease is over).
AttemptRunner calls it after the commit that ends a run; worker/owed.py for a run whose last
attempt crashed (the hook owed in storage, since no worker was left to call it)."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from tether.engine import states
from tether.engine.context import SyncContext
from tether.engine.scope import RunScope
from tether.serialization import loads
from tether.storage.records import Lease, RunRecord

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

log = logging.getLogger("tether.worker")


async def run_hook(task: Task[Any, Any], scope: RunScope, record: RunRecord) -> None:
    """The hook for `record`'s final status, if the task has one; its exceptions are logged."""
    hook, value = None, None
    if record.status == states.S.COMPLETED and task.on_success is not None:
        hook, value = task.on_success, loads(record.output)
    elif record.status != states.S.COMPLETED and task.on_failure is not None:
        hook, value = task.on_failure, loads(record.error)
    if hook is None:
        return
    ctx = SyncContext(scope, task.id, None)
    try:
        result = hook(loads(record.payload), value, ctx)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("hook of task %s failed for run %s", task.id, record.id)


def ended_scope(app: Tether, record: RunRecord) -> RunScope:
    """The scope of a run's last attempt, after it ended (as a hook after the commit sees it)."""
    lease = Lease(record.id, record.lease_token or "", record.attempts, record.worker_id or "")
    scope = RunScope(app.storage, app.clock, record, lease, {})
    scope.app, scope.dead = app, True
    return scope
