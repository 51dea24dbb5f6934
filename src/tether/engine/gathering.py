"""Several durable waits at once: `asyncio.gather` of ctx waits, and `SyncContext.parallel`.

A wait that is not over raises `Suspend` (engine/waits.py). Alone, that unwinds the task's code
and parks the run at once, as always. When other durable work of the run is in flight (the wait
runs in a task other than the body's, or the body's own task while steps run beside it), the
wait is held instead: its `Suspend` is kept and the call awaits. Once every durable call of the
run in flight is a held wait (no step or in-process sleep running, but those whose own task
holds a wait: a step whose function waits) for a few turns of the event loop, the run parks
once for all of them (one held wait is raised as it was: the run parks on it alone):

- `Storage.park_gather` stores, fenced by the lease, the waits' rows and one "part" per thing
  still waited for (a token, a child group, a time), under the gather's id
  `gather_<run id>_<key of its first wait>.<lease token>` (one per park);
- every held call raises `Suspend(until, that id)`; the attempt ends with the run WAITING on it.

The store queues the run once no part is left undue (see migration 0021); the run's code then
runs again from the top and each wait returns its result (or raises, e.g. WaitTimeout) from its
own row, in call order. Positions are those of the calls, assigned when each was reached.

A new kind of wait takes part by raising `Suspend` with its `key`, its `until` (when it is over
by time; NEVER if only by its event) and its `waiting_for` (SLEEP for a wait over only by time,
else the id of what ends it: the store must delete that part from wait_parts, through its
`_settle_parts`, in the transaction that ends it) and, in an async context, by awaiting
`hold(scope, parked)` where it would raise it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from tether.engine.scope import RunScope
from tether.engine.waits import GATHER, NEVER, SLEEP, Suspend
from tether.storage.records import WaitPart

QUIET_TURNS = 3  # loop turns with nothing but held waits in flight before the run parks


class Gathering:
    """The held waits of one attempt (async tasks), and when to park them."""

    def __init__(self, scope: RunScope) -> None:
        self.scope = scope
        # each held wait: its Suspend, the future its call awaits, and the task it is held in
        self.held: list[tuple[Suspend, asyncio.Future[None], asyncio.Task[Any] | None]] = []
        self.stamp = 0  # each change starts a new quiet count; older counts stop

    def hold(self, parked: Suspend) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append((parked, future, asyncio.current_task()))
        self.poke()
        return future

    def drop(self, future: asyncio.Future[None]) -> None:
        """A held call that no longer waits (its task was cancelled) is not parked on."""
        self.held = [entry for entry in self.held if entry[1] is not future]

    def in_flight(self) -> bool:
        """Whether durable work runs that is not waiting for a held wait (a step whose function
        itself waits, as an agent's tool may, is waiting: it ends only once the run resumed)."""
        holding = {task for _, _, task in self.held}
        return any(task not in holding for task in self.scope.busy)

    def poke(self) -> None:
        """Something changed (a wait held, a step ended): count quiet turns again."""
        if not self.held or self.scope.parked is not None:
            return
        self.stamp += 1
        asyncio.get_running_loop().call_soon(self._quiet, self.stamp, 1)

    def _quiet(self, stamp: int, turns: int) -> None:
        scope = self.scope
        if stamp != self.stamp or scope.parked is not None or scope.dead or self.in_flight():
            return  # a newer count runs, it is over, or a step still runs (it pokes when done)
        if turns < QUIET_TURNS:
            asyncio.get_running_loop().call_soon(self._quiet, stamp, turns + 1)
            return
        held, self.held = self.held, []
        if len(held) == 1:  # one wait after all (in a task of its own): it parks as always
            scope.parked, future = held[0][0], held[0][1]
            if not future.done():
                future.set_exception(scope.parked)
            return
        try:
            parked = park(scope, [p for p, _, _ in held])
        except BaseException as exc:  # (LeaseLost: the calls raise it, and the attempt stops)
            for _, future, _ in held:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future, _ in held:
            if not future.done():
                future.set_exception(parked.again())

    def close(self) -> None:
        """The attempt is over: calls still held (their gather was abandoned) are cancelled."""
        held, self.held = self.held, []
        for _, future, _ in held:
            future.cancel()


def _gathering(scope: RunScope) -> Gathering:
    if scope.gathering is None:
        scope.gathering = Gathering(scope)
    gathering: Gathering = scope.gathering
    return gathering


async def hold(scope: RunScope, parked: Suspend) -> NoReturn:
    """Where an async wait that is not over would raise `parked`: raise it at once when nothing
    else of the run is in flight (the run parks on this wait alone), else hold it until the run
    parks on every held wait together (then the gather's Suspend is raised)."""
    if scope.parked is not None:  # parked already (a gather that returned its exceptions)
        raise scope.parked.again()
    gathering = scope.gathering
    me = asyncio.current_task()
    alone = scope.main_task is None or me is scope.main_task
    if alone and all(task is me for task in scope.busy) and (
            gathering is None or not gathering.held):
        raise parked  # (a step of this task around this wait ends only after the resume)
    held = _gathering(scope)
    future = held.hold(parked)
    try:
        await future
    except asyncio.CancelledError:  # its task was cancelled (a TaskGroup whose branch failed)
        held.drop(future)
        raise
    raise AssertionError("a held wait ends only with an exception")  # pragma: no cover


def begin_work(scope: RunScope) -> asyncio.Task[Any] | None:
    """Before durable work that awaits (a step's function, an in-process sleep): held waits do
    not park the run while it runs. Returns the task to hand to `end_work` after it."""
    task = asyncio.current_task()
    scope.busy[task] = scope.busy.get(task, 0) + 1
    return task


def end_work(scope: RunScope, task: asyncio.Task[Any] | None) -> None:
    left = scope.busy[task] - 1
    if left:
        scope.busy[task] = left
    else:
        del scope.busy[task]
    if scope.gathering is not None:
        scope.gathering.poke()


@contextmanager
def working(scope: RunScope) -> Iterator[None]:
    """`begin_work` ... `end_work` around a block."""
    task = begin_work(scope)
    try:
        yield
    finally:
        end_work(scope, task)


def park(scope: RunScope, pending: list[Suspend]) -> Suspend:
    """Store the held waits as one gather (their rows and parts, fenced by the lease) and return
    the Suspend that parks the run on it; scope.parked is set."""
    scope.check()
    scope.drain()  # the rows queued before the gather's are on disk first
    now = scope.clock.now()
    # unique per park (the lease's token: one per claim), named after its first wait
    wait = f"{GATHER}{scope.lease.run_id}_{pending[0].key}.{scope.lease.token}"
    parts = [_part(p) for p in pending]
    rows = [p.step for p in pending if p.step is not None]
    due = scope.storage.park_gather(scope.lease, wait, parts, rows, now)
    for row in rows:
        scope.steps[row.key] = row
    until = now if due is None else due  # (None: all over already; queued at once)
    reason = f"waiting for {len(pending)} things at once: " + "; ".join(p.reason for p in pending)
    scope.parked = Suspend(until, wait, None, reason, pending[0].key)
    return scope.parked


def _part(parked: Suspend) -> WaitPart:
    if parked.waiting_for == SLEEP:  # over only by time
        return WaitPart(f"time:{parked.key}", parked.until)
    return WaitPart(parked.waiting_for, None if parked.until >= NEVER else parked.until)


def parallel(scope: RunScope, calls: tuple[Callable[[], Any], ...]) -> list[Any]:
    """SyncContext.parallel: call each in turn; the waits that are not over park the run once,
    together. An exception of a call (other than a wait) is raised once all were called."""
    for n, call in enumerate(calls):
        if not callable(call):
            raise TypeError(f"ctx.parallel() takes zero-argument callables; argument {n + 1} is "
                            f"{type(call).__name__} (wrap a call in a lambda)")
    results: list[Any] = []
    pending: list[Suspend] = []
    error: Exception | None = None
    for call in calls:
        try:
            results.append(call())
        except Suspend as parked:
            if parked.waiting_for.startswith(GATHER):
                raise  # a nested parallel parked the run already
            pending.append(parked)
            results.append(None)
        except Exception as exc:
            error = exc if error is None else error
            results.append(None)
    if error is not None:
        raise error
    if len(pending) == 1:
        raise pending[0]  # one wait: parked as always
    if pending:
        raise park(scope, pending)
    return results
