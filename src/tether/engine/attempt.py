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
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tether.backpressure import MAX_DEFERRALS, back_pressure
from tether.engine import states, verdicts
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
from tether.errors import LeaseLost
from tether.isolation.messages import Died
from tether.isolation.pool import ProcessPool
from tether.observe.tracing import start_segment
from tether.serialization import dumps, loads
from tether.storage.records import ClaimedRun, Finish, RunRecord, forked
from tether.task import IN_PROCESS

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
        # the child processes of tasks with isolation="process" (made on first need)
        self.isolation: ProcessPool | None = None

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
        scope.respect_retry_after = task.respect_retry_after
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
        # (back-pressure pauses the run's key first; its runs held in line do not take over)
        await self._pause(scope)
        heir = (self.batcher.refill.successor(execution)
                if self.batcher.refill and scope.pause is None else None)
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
        if task.isolation == IN_PROCESS:
            return await self._call_isolated(task, scope)
        try:
            payload = task.parse(loads(scope.record.payload))
        except Exception as exc:
            return verdicts.unparsable(exc)
        return await self._call_here(task, scope, payload)

    async def _call_here(self, task: Task[Any, Any], scope: RunScope,
                         payload: Any) -> states.Transition:
        """The attempt's code in the worker's process, within the run's max_duration."""
        limit = scope.record.max_duration
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                output = await self._invoke(task, payload, scope)
            if scope.parked is not None:  # held waits parked the run (engine/gathering.py)
                return _parked(scope)
            return verdicts.succeeded(self.app, task, scope, output)
        except Suspend as parked:
            if scope.parked is not None:  # what the held waits decided (and the row it carries)
                return _parked(scope)
            return verdicts.raised(scope, parked, self.app.clock.now())
        except (LeaseLost, asyncio.CancelledError):
            raise
        except BaseException as exc:
            if scope.parked is not None:
                # stored as parked on a gather: whatever the code did after (an exception of a
                # TaskGroup, or of a branch the gather raised first), the run waits
                return _parked(scope)
            if not isinstance(exc, Exception):
                raise
            expired = limit is not None and timeout.expired()
            return await self._raised(task, scope, exc, limit if expired else None)
        finally:
            if scope.gathering is not None:
                scope.gathering.close()

    async def _raised(self, task: Task[Any, Any], scope: RunScope, exc: Exception,
                      expired: float | None) -> states.Transition:
        """The transition for code that raised `exc` (`expired`: the max_duration it ran past,
        when the timeout is why)."""
        if isinstance(exc, TimeoutError) and expired is not None:
            scope.dead = True
            return verdicts.timed_out(expired)
        pressure = back_pressure(exc, task.respect_retry_after, self.app.clock.now())
        if pressure is not None:
            return await self._deferred(scope.record, scope, exc, pressure)
        return verdicts.raised(scope, exc, self.app.clock.now())

    async def _call_isolated(self, task: Task[Any, Any], scope: RunScope) -> states.Transition:
        """The attempt in one of the worker's child processes (tether/isolation/): past
        `max_duration`, or canceled, the process is killed."""
        if self.isolation is None:
            self.isolation = ProcessPool(self.app, self.leases)
        child = await self.isolation.take()  # (a process starting is not the task's time)
        if isinstance(child, Died):
            return child.transition_for(scope, self.app.clock.now())
        limit = scope.record.max_duration
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                ended = await self.isolation.run(child, task, scope)
        except TimeoutError:
            if limit is not None and timeout.expired():
                scope.dead = True
                return verdicts.timed_out(limit)
            raise
        return ended.transition_for(scope, self.app.clock.now())

    async def _deferred(self, record: RunRecord, scope: RunScope, exc: Exception,
                        pressure: tuple[float, str]) -> states.Transition:
        """Back-pressure: the run comes back after the wait it was told, its attempt not counted,
        and its queue's key is paused until then (written before the attempt's end: `_segment`).
        The MAX_DEFERRALS-th in a row on one attempt counts a failed attempt (with the task's
        retry policy, but no sooner than the wait), so a run told to wait for ever still ends."""
        delay, why = pressure
        now = self.app.clock.now()
        until = now + delay
        rate_key = getattr(record, "rate_key", None)  # (a column of migration 0016)
        key = record.concurrency_key if rate_key is None else str(rate_key)
        scope.pause = (record.queue, key, until, why)
        storage = self.app.storage
        attempts = (await asyncio.to_thread(storage.list_attempts, record.id)
                    if storage.io_bound else storage.list_attempts(record.id))
        in_a_row = 1 + sum(1 for a in attempts
                           if a.number == scope.lease.attempt and a.status == "DEFERRED")
        back = datetime.fromtimestamp(until, UTC).isoformat(timespec="milliseconds")
        if in_a_row < MAX_DEFERRALS:
            return states.deferred(until, f"{why}; back at {back}, attempt not counted, key "
                                          f"{key!r} of queue {record.queue!r} paused until then "
                                          f"({in_a_row} in a row)", dumps(error_dict(exc)))
        failed = verdicts.failed(scope, dumps(error_dict(exc)), now)
        note = f"{failed.reason} (told to retry after a wait {in_a_row} times in a row)"
        if failed.available_at is None:
            return replace(failed, reason=note)
        return replace(failed, reason=note, available_at=max(failed.available_at, until))

    async def _pause(self, scope: RunScope) -> None:
        """Pause the run's queue key, as its back-pressure asked, before its attempt ends."""
        if scope.pause is None:
            return
        queue, key, until, why = scope.pause
        storage, now = self.app.storage, self.app.clock.now()
        try:
            if storage.io_bound:
                await asyncio.to_thread(storage.pause_key, queue, key, until, why, now)
            else:
                storage.pause_key(queue, key, until, why, now)
        except Exception:  # the run still comes back later; only its key's other runs go on
            log.warning("run %s: could not pause key %r of queue %r", scope.record.id, key,
                        queue, exc_info=True)

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
