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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from tether.engine import states
from tether.engine.context import Context, SyncContext
from tether.engine.leases import LeaseClock
from tether.engine.outcomes import log_outcome
from tether.engine.scope import RunScope, current_scope, error_dict
from tether.engine.waits import Suspend
from tether.errors import AbortRun, LeaseLost, OnceInterrupted, SerializationError
from tether.options import Retry
from tether.serialization import dumps, dumps_output, loads
from tether.storage.records import ClaimedRun, ClaimRequest, Finish, RunRecord, forked

# the ending of a run started before the commit that was to hand it a slot, which did not
UNPLACED = ("started as the run before it in its queue's slot ended, but the commit that was to "
            "hand it that slot did not (that run or this one no longer held its lease); back "
            "in the queue, not counted")

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.task import Task

log = logging.getLogger("tether.worker")


@dataclass
class Execution:
    """A running attempt as the worker sees it."""

    claimed: ClaimedRun
    scope: RunScope | None = None
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "canceled", "lease_lost", "shutdown"
    finishing: bool = False
    holds_slot: bool = False  # a run of a limited queue that holds one of its slots
    began: float = 0.0  # time.monotonic() when it started here
    handed_over: bool = False  # it ended and a run held in line took its slot
    # started as `before` ended, before the commit that ends `before` hands it the slot: until
    # that commit, the slot is stored as held by `before`'s row (or by the one before it)
    before: Execution | None = None
    final: bool = False  # its attempt ended the run (it will not be due again)


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


class _Outcome:
    """A call's result or exception, carried back from a thread."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _attempt_call(fn: Callable[[], Any]) -> _Outcome:
    try:
        return _Outcome(fn())
    except Exception as exc:
        return _Outcome(error=exc)


class Refill(Protocol):
    """The worker's side of claiming in the same transaction that ends attempts."""

    concurrency: int  # how many attempts it runs at most

    def request(self, finishing: int) -> ClaimRequest | None: ...

    def started(self, claimed: list[ClaimedRun], asked: int, standby_asked: int = 0,
                since: float | None = None) -> None: ...

    def successor(self, execution: Execution) -> ClaimedRun | None: ...

    def inherit(self, heir_id: str, handed_over: bool) -> None: ...

    def gather_delay(self) -> float: ...

    def running_count(self) -> int: ...


class FinishBatcher:
    """Group commit: attempts that end in the same turn of the event loop are written in one
    transaction, so a busy worker pays for one commit per batch instead of one per run."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.pending: list[tuple[Finish, asyncio.Future[RunRecord | None]]] = []
        self.refill: Refill | None = None
        self.scheduled = False
        self.in_flight: asyncio.Task[None] | None = None
        # successors named in endings not yet committed; the endings of those among them that
        # started early and ended already, held back until that commit: the run's end is never
        # written before (or with) the hand-over of its slot
        self.unconfirmed: set[str] = set()
        self.held: dict[str, tuple[Finish, asyncio.Future[RunRecord | None]]] = {}
        self.asking = False  # a commit is due even without endings (see `ask`)

    async def finish(self, item: Finish) -> RunRecord | None:
        future: asyncio.Future[RunRecord | None] = asyncio.get_running_loop().create_future()
        if item.successor is not None:
            self.unconfirmed.add(item.successor.run_id)
        if item.lease.run_id in self.unconfirmed:
            self.held[item.lease.run_id] = (item, future)
        else:
            self._add(item, future)
        return await future

    def ask(self) -> None:
        """Commit soon even if no attempt ends: the worker wants runs in line (for a slot it
        just claimed), which are asked for in the commits that end attempts."""
        if not self.asking:
            self.asking = True
            asyncio.get_running_loop().call_soon(self._start)

    def _add(self, item: Finish, future: asyncio.Future[RunRecord | None]) -> None:
        self.pending.append((item, future))
        loop = asyncio.get_running_loop()
        if item.successor is not None:
            # no gathering: the heir's hand-over is due. In the next turn, so that an heir
            # started early begins its body before a commit made on the loop (SQLite)
            loop.call_soon(self._start)
        elif self.scheduled and self._all_ending():
            self._start()  # nothing left to gather: every place's attempt is ending
        elif not self.scheduled:
            self.scheduled = True
            delay = self.refill.gather_delay() if self.refill is not None else 0.0
            loop.call_later(delay, self._start)

    def _settle(self, heir_id: str, handed_over: bool) -> None:
        """The commit that was to hand run `heir_id` a slot returned: tell the worker, and write
        the heir's ending if it was held back; one that never got the slot goes back to the
        queue (not counted), and so does its own successor, in turn."""
        self.unconfirmed.discard(heir_id)
        if self.refill is not None:
            self.refill.inherit(heir_id, handed_over)
        held = self.held.pop(heir_id, None)
        if held is None:
            return
        item, future = held
        if not handed_over:
            if item.successor is not None:
                self._settle(item.successor.run_id, False)
            item = replace(item, transition=states.handed_back(UNPLACED), step=None,
                           successor=None)
        self._add(item, future)

    def _start(self) -> None:
        """Commit what is pending. A storage whose calls wait on the network is called from a
        thread, one batch at a time, so running tasks go on meanwhile and the attempts that end
        during one commit form the next batch."""
        self.scheduled = False
        if self.in_flight is not None:
            return  # the batch in flight starts the next one when it is done
        batch, self.pending = self.pending, []
        if not batch and not self.asking:
            return
        self.asking = False
        if not self.app.storage.io_bound or not self._others_running(len(batch)):
            self._commit(batch, self._write(batch))  # nothing else to stall: skip the thread hop
            return
        self.in_flight = asyncio.get_running_loop().create_task(self._commit_in_thread(batch))

    def _all_ending(self) -> bool:
        """Whether the attempts of all the worker's places wait in this batch (where a commit
        takes microseconds): its claim can take no more than it frees, so gathering longer
        would only delay the runs it starts. (With places free, runs arriving meanwhile are
        worth waiting for: they are claimed in the same commit.)"""
        return (not self.app.storage.io_bound and self.refill is not None
                and len(self.pending) >= self.refill.concurrency)

    def _others_running(self, ending: int) -> bool:
        return self.refill is not None and self.refill.running_count() > ending

    def _write(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]]
               ) -> Callable[[], _Written]:
        # (every item leaves the running set; a successor started early is in it already)
        items = [item for item, _ in batch]
        since = time.monotonic()  # before the claim's time is read: its leases count from here
        request = self.refill.request(len(items)) if self.refill is not None else None
        asked = request.limit if request is not None else 0
        standby = sum(n for _, _, n in request.standby) if request is not None else 0

        def write() -> _Written:
            results, claimed = self.app.storage.finish_attempts(items, self.app.clock.now(),
                                                                request)
            return _Written(results, claimed, asked, standby, since)

        return write

    async def _commit_in_thread(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]]
                                ) -> None:
        try:
            write = self._write(batch)
            outcome = await asyncio.to_thread(_attempt_call, write)
            self._commit(batch, lambda: outcome.result())
        finally:
            self.in_flight = None
            if (self.pending or self.asking) and not self.scheduled:
                self.scheduled = True
                asyncio.get_running_loop().call_soon(self._start)

    def _commit(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]],
                write: Callable[[], _Written]) -> None:
        try:
            written = write()
        except Exception as exc:
            for item, future in batch:
                if item.successor is not None:
                    self._settle(item.successor.run_id, False)
                if not future.done():
                    future.set_exception(exc)
            return
        for (item, future), result in zip(batch, written.results, strict=True):
            if item.successor is not None:
                # an heir waiting for this commit starts if it gave it the slot; a refused
                # hand-over (this attempt's lease was lost, or the heir's) starts nothing, and
                # stops an heir started early
                self._settle(item.successor.run_id, result is not None and result.handed_over)
            if not future.done():
                future.set_result(result)
        if (written.asked or written.standby) and self.refill is not None:
            self.refill.started(written.claimed, written.asked, written.standby, written.since)


@dataclass
class _Written:
    """What one commit of a batch returned, and what it asked for."""

    results: list[RunRecord | None]
    claimed: list[ClaimedRun]
    asked: int
    standby: int
    since: float  # time.monotonic() before the claim's time was read


class AttemptRunner:
    def __init__(self, app: Tether) -> None:
        self.app = app
        self.batcher = FinishBatcher(app)
        self.leases: LeaseClock | None = None  # the worker's; None: no own-clock check

    async def run(self, task: Task[Any, Any], execution: Execution) -> None:
        claimed = execution.claimed
        storage, clock = self.app.storage, self.app.clock
        steps = {}
        # a run that executed before, or a fork that starts with copied steps (a round trip on
        # PostgreSQL: off the loop, so other runs go on)
        if claimed.resumed or forked(claimed.record):
            steps = (await asyncio.to_thread(storage.load_steps, claimed.record.id)
                     if storage.io_bound else storage.load_steps(claimed.record.id))
        scope = RunScope(storage, clock, claimed.record, claimed.lease, steps)
        scope.app, scope.inline_sleep = self.app, self.app.inline_sleep
        scope.leases = self.leases
        execution.scope = scope
        current_scope.set(scope)
        try:
            transition = await self._attempt(task, scope, execution)
        finally:
            if scope.pipeline is not None:
                scope.pipeline.forget(scope.lease)  # (rows still queued are written, fenced)
        if transition is None:
            return
        execution.finishing = True
        execution.final = transition.is_final
        # a run held in line for this slot: the commit that ends this attempt hands the slot to
        # it; it starts now if the worker's leases keep the slot its own until then, else once
        # that commit succeeded
        heir = self.batcher.refill.successor(execution) if self.batcher.refill else None
        await self._finish(task, scope, transition, heir)

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
        except LeaseLost:
            scope.dead = True
            if execution.stop_reason == "no_slot":
                return states.handed_back(UNPLACED)
            claimed = execution.claimed
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
        now = self.app.clock.now
        try:
            payload = task.parse(loads(record.payload))
        except Exception as exc:
            return states.aborted(dumps(error_dict(exc)), "payload no longer validates")
        limit = record.max_duration
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                output = await self._invoke(task, payload, scope)
            return states.succeeded(dumps_output(output, f"the return value of task {task.id!r}",
                                                 self.app.max_output_size))
        except Suspend as parked:
            scope.wait_step = parked.step
            return states.suspended(parked.until, parked.waiting_for, parked.reason)
        except (AbortRun, OnceInterrupted) as exc:
            return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc}")
        except SerializationError as exc:
            # a value the code produced cannot be stored: another attempt would produce it again
            return states.aborted(dumps(error_dict(exc)), f"{type(exc).__name__}: {exc} "
                                                          "(not retried: it would fail again)")
        except (LeaseLost, asyncio.CancelledError):
            raise
        except TimeoutError as exc:
            if limit is not None and timeout.expired():
                scope.dead = True
                error = {"message": f"run exceeded max_duration of {limit:g}s",
                         "type": "tether.TimedOut"}
                return states.timed_out(dumps(error), limit)
            return self._failed(record, scope, exc, now())
        except Exception as exc:
            return self._failed(record, scope, exc, now())

    def _failed(self, record: RunRecord, scope: RunScope, exc: Exception,
                now: float) -> states.Transition:
        policy = Retry.from_dict(loads(record.retry))
        return states.attempt_failed(attempt=scope.lease.attempt, max_attempts=record.max_attempts,
                                     policy=policy, error_json=dumps(error_dict(exc)), now=now)

    async def _invoke(self, task: Task[Any, Any], payload: Any, scope: RunScope) -> Any:
        loop = asyncio.get_running_loop()
        if task.is_async:
            args = (payload, Context(scope, task.id, loop)) if task.takes_ctx else (payload,)
            return await task.fn(*args)
        sargs = (payload, SyncContext(scope, task.id, loop)) if task.takes_ctx else (payload,)
        context = contextvars.copy_context()
        result = await _in_thread(lambda: context.run(task.fn, *sargs))
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _finish(self, task: Task[Any, Any], scope: RunScope, transition: states.Transition,
                      heir: ClaimedRun | None = None) -> None:
        scope.dead = True
        # (the batcher tells the worker whether the heir got the slot, right after the commit)
        record = await self.batcher.finish(Finish(
            scope.lease, transition, scope.take_flush(), scope.wait_step,
            heir.lease if heir is not None else None))
        if record is not None:
            log_outcome(record, scope.lease.attempt, transition)
        if record is not None and transition.is_final:
            await self._hooks(task, scope, record)

    async def _hooks(self, task: Task[Any, Any], scope: RunScope, record: RunRecord) -> None:
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
