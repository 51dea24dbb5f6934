"""Executing one attempt of a run: call the task function with its context, then decide the
transition (complete, retry later, fail, time out) and store it, fenced by the attempt's lease."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.engine import states
from tether.engine.context import Context, SyncContext
from tether.engine.current import running
from tether.engine.execution import Execution
from tether.engine.faults import StepHooks, WorkerDied
from tether.engine.finishing import UNPLACED, FinishBatcher
from tether.engine.hooks import run_hook
from tether.engine.leases import LeaseClock
from tether.engine.outcomes import log_outcome
from tether.engine.scope import RunScope, current_scope, error_dict
from tether.engine.waits import Suspend
from tether.errors import AbortRun, LeaseLost, OnceInterrupted, SerializationError
from tether.observe.tracing import start_segment
from tether.options import Retry
from tether.serialization import dumps, dumps_output, loads
from tether.storage.records import ClaimedRun, Finish, RunRecord, forked

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.observe.metrics import Metrics
    from tether.task import Task

__all__ = ["UNPLACED", "AttemptRunner", "Execution", "FinishBatcher"]

log = logging.getLogger("tether.worker")


def _in_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run `fn` in a daemon thread (so a stuck sync task never blocks process exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, daemon=True, name="tether-sync-task").start()
    return future


def _parked(scope: RunScope) -> states.Transition:
    """The run parks on what its held waits decided (engine/gathering.py): the gather they were
    stored as, or the one wait that was held (its row is written with the park)."""
    parked = scope.parked
    assert parked is not None
    scope.wait_step = parked.step
    return states.suspended(parked.until, parked.waiting_for, parked.reason)


class AttemptRunner:
    def __init__(self, app: Tether) -> None:
        self.app = app
        self.batcher = FinishBatcher(app)
        self.leases: LeaseClock | None = None  # the worker's; None: no own-clock check
        self.metrics: Metrics | None = None  # the process's, when on (the worker sets it)
        self.hooks: StepHooks | None = None  # fault injection (tether.testing); None: none

    async def run(self, task: Task[Any, Any], execution: Execution) -> None:
        claimed = execution.claimed
        storage, clock = self.app.storage, self.app.clock
        steps = {}
        # a run that executed before, or a fork that starts with copied steps (a round trip on
        # PostgreSQL: off the loop, so other runs go on)
        if claimed.resumed or forked(claimed.record):
            steps = (await asyncio.to_thread(storage.load_steps, claimed.record.id)
                     if storage.io_bound else storage.load_steps(claimed.record.id))
        loaded = frozenset(steps) if self.metrics is not None else frozenset()
        scope = RunScope(storage, clock, claimed.record, claimed.lease, steps)
        scope.app, scope.inline_sleep = self.app, self.app.inline_sleep
        scope.leases, scope.hooks = self.leases, self.hooks
        execution.scope = scope
        current_scope.set(scope)
        # the segment's span (None: tracing is off), current while the task's code runs
        traced = scope.trace = start_segment(claimed.record, claimed.lease, claimed.resumed,
                                             clock.now())
        if traced is None:
            await self._segment(task, scope, execution, loaded)
            return
        traced.enter()
        transition: states.Transition | None = None
        try:
            transition = await self._segment(task, scope, execution, loaded)
        finally:
            traced.end(transition)

    async def _segment(self, task: Task[Any, Any], scope: RunScope, execution: Execution,
                       loaded: frozenset[str]) -> states.Transition | None:
        """The attempt's code and its ending, stored; the transition (None: nothing stored).
        `loaded`: the step keys stored before (their durations are not this segment's)."""
        try:
            transition = await self._attempt(task, scope, execution)
        finally:
            if scope.pipeline is not None:
                scope.pipeline.forget(scope.lease)  # (rows still queued are written, fenced)
        if transition is None:
            return None
        execution.finishing = True
        execution.final = transition.is_final
        # a run held in line for this slot: the commit that ends this attempt hands the slot to
        # it; it starts now if the worker's leases keep the slot its own until then, else once
        # that commit succeeded
        heir = self.batcher.refill.successor(execution) if self.batcher.refill else None
        record = await self._finish(task, scope, transition, heir)
        if self.metrics is not None:
            self.metrics.attempt_ended(
                task.id, time.monotonic() - execution.began,
                record.status if record is not None else None,
                [s for key, s in list(scope.steps.items()) if key not in loaded])
        if record is not None and transition.is_final:
            await self._hooks(task, scope, record)
        return transition

    async def _attempt(self, task: Task[Any, Any], scope: RunScope, execution: Execution
                       ) -> states.Transition | None:
        """The task's code and its transition once its rows are stored; None: nothing to store
        (canceled or taken over: storage already says so; or the lease was lost)."""
        unplaced = execution.stop_reason == "no_slot"  # refused the slot before its body began
        try:
            try:
                if unplaced:
                    return states.handed_back(UNPLACED)
                scope.check()  # no task body starts without the lease, by the worker's own clock
                transition = await self._call(task, scope)
            except asyncio.CancelledError:
                scope.dead = True
                if execution.stop_reason == "no_slot":
                    return states.handed_back(UNPLACED)
                if execution.stop_reason != "shutdown":
                    return None
                transition = states.handed_back()
            await self._drain(scope)  # the attempt's rows are on disk before it ends
        except LeaseLost as lost:
            scope.dead = True
            if execution.stop_reason == "no_slot":
                return states.handed_back(UNPLACED)
            claimed = execution.claimed
            if isinstance(lost, WorkerDied):
                log.info("run %s: attempt %d stopped: %s", claimed.record.id,
                         claimed.lease.attempt, lost)
                return None
            log.warning("run %s: attempt %d stopped: this worker no longer holds its lease "
                        "(canceled, taken over, or the worker could not renew it in time)",
                        claimed.record.id, claimed.lease.attempt)
            return None
        return transition

    async def _drain(self, scope: RunScope) -> None:
        """Wait (off the loop) until the rows the attempt queued in the storage's pipeline are on
        disk: the commit that ends the attempt comes after them."""
        pipeline = scope.pipeline
        if pipeline is not None and not pipeline.settled(scope.lease):
            await asyncio.to_thread(scope.drain)

    async def _call(self, task: Task[Any, Any], scope: RunScope) -> states.Transition:
        record = scope.record
        try:
            payload = task.parse(loads(record.payload))
        except Exception as exc:
            return states.aborted(dumps(error_dict(exc)), "payload no longer validates")
        limit = record.max_duration
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                output = await self._invoke(task, payload, scope)
            if scope.parked is not None:  # held waits parked the run (engine/gathering.py)
                return _parked(scope)
            return states.succeeded(dumps_output(output, f"the return value of task {task.id!r}",
                                                 self.app.max_output_size, self.app.objects,
                                                 record.id))
        except Suspend as parked:
            if scope.parked is not None:  # what the held waits decided (and the row it carries)
                return _parked(scope)
            scope.wait_step = parked.step
            return states.suspended(parked.until, parked.waiting_for, parked.reason)
        except (LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as exc:
            if scope.parked is not None:
                # stored as parked on a gather: whatever the code did after (an exception of a
                # TaskGroup, or of a branch the gather raised first), the run waits
                return _parked(scope)
            if not isinstance(exc, Exception):
                raise
            return self._ended(record, scope, exc, limit, timeout)
        finally:
            if scope.gathering is not None:
                scope.gathering.close()

    def _ended(self, record: RunRecord, scope: RunScope, exc: Exception, limit: float | None,
               timeout: asyncio.Timeout) -> states.Transition:
        """The transition for an attempt whose code raised `exc`."""
        if isinstance(exc, AbortRun | OnceInterrupted):
            return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc}")
        if isinstance(exc, SerializationError):
            # a value the code produced cannot be stored: another attempt would produce it again
            return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc} "
                                                          "(not retried: it would fail again)")
        if isinstance(exc, TimeoutError) and limit is not None and timeout.expired():
            scope.dead = True
            error = {"message": f"run exceeded max_duration of {limit:g}s",
                     "type": "tether.TimedOut"}
            return states.timed_out(dumps(error), limit)
        return self._failed(record, scope, exc, self.app.clock.now())

    def _failed(self, record: RunRecord, scope: RunScope, exc: Exception,
                now: float) -> states.Transition:
        policy = Retry.from_dict(loads(record.retry))
        return states.attempt_failed(attempt=scope.lease.attempt, max_attempts=record.max_attempts,
                                     policy=policy, error_json=dumps(error_dict(exc)), now=now)

    async def _invoke(self, task: Task[Any, Any], payload: Any, scope: RunScope) -> Any:
        loop = asyncio.get_running_loop()
        if task.is_async:
            scope.main_task = asyncio.current_task()  # (waits elsewhere may be gathered)
            if task.takes_ctx:
                actx = Context(scope, task.id, loop)
                with running(actx):  # tether.current_context(), for code the body calls
                    return await task.fn(payload, actx)
            with running(lambda: Context(scope, task.id, loop)):
                return await task.fn(payload)
        sctx = SyncContext(scope, task.id, loop) if task.takes_ctx else None
        context = contextvars.copy_context()

        def body() -> Any:
            if sctx is not None:
                with running(sctx):  # tether.current_sync_context(), in the task's thread
                    return task.fn(payload, sctx)
            with running(lambda: SyncContext(scope, task.id, loop)):
                return task.fn(payload)

        result = await _in_thread(lambda: context.run(body))
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _finish(self, task: Task[Any, Any], scope: RunScope, transition: states.Transition,
                      heir: ClaimedRun | None = None) -> RunRecord | None:
        scope.dead = True
        # (the batcher tells the worker whether the heir got the slot, right after the commit)
        record = await self.batcher.finish(Finish(
            scope.lease, transition, scope.take_flush(), scope.wait_step,
            heir.lease if heir is not None else None))
        if record is not None:
            log_outcome(record, scope.lease.attempt, transition)
        return record

    async def _hooks(self, task: Task[Any, Any], scope: RunScope, record: RunRecord) -> None:
        await run_hook(task, scope, record)
