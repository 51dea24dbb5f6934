"""The worker loop's wake-up: `asyncio.Event` with a timed wait that makes no task.

`asyncio.wait_for(event.wait(), timeout)` wraps the wait in a task and arms a new timer on
every call; an idle worker waits several times per run, so those (and the loop turns the task
adds between the wake-up and the worker) are a fair part of its CPU per run. Here a wait is one
future, woken directly by `set`, and one timer serves every wait: it is armed for the first
deadline, and when it fires before the current deadline (a later wait moved it) it is armed
again for the remainder, so a worker woken every few milliseconds arms it about once per
timeout rather than once per wait."""

from __future__ import annotations

import asyncio
import math


class Wake:
    """`set`/`clear`/`is_set` as asyncio.Event; `wait(timeout)` returns False on the timeout."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[bool] | None = None
        self._deadline = math.inf  # the loop time the current wait times out at
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf  # the loop time the timer fires at

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float | None = None) -> bool:
        """Until `set` (True at once if it is) or, with a timeout, until it passes (False)."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        self._deadline = math.inf if timeout is None else loop.time() + timeout
        if self._deadline < self._armed:  # (no timer, or one that fires too late)
            if self._timer is not None:
                self._timer.cancel()
            self._arm(loop)
        try:
            return await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = self._deadline
        self._timer = loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        armed, self._timer, self._armed = self._armed, None, math.inf
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # (the next timed wait arms it again)
        if armed < self._deadline:  # a later wait moved the deadline: not yet
            if self._deadline < math.inf:
                self._arm(asyncio.get_running_loop())
        else:
            waiter.set_result(False)

    def close(self) -> None:
        """Cancel the timer (the worker stopped)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed = None, math.inf
