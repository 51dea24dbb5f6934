"""The worker's event loop, with timers kept to the microsecond.

asyncio's default selector on Linux is epoll, whose timeout is whole milliseconds, rounded up:
on a loop that is busy between two timers, `asyncio.sleep(0.005)` ends 0.5 ms late on average
(about 10 %), and the worker's own half-millisecond gathering delay becomes a whole one. The
selector here keeps epoll for readiness (any number of file descriptors) but waits for the
epoll descriptor itself with `select()`, whose timeout has microsecond resolution, then
collects the events without waiting."""

from __future__ import annotations

import asyncio
import select
import selectors

FD_SETSIZE = 1024  # select() takes descriptors below this only


class _Precise(selectors.EpollSelector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        fd = self.fileno()
        if timeout is not None and timeout > 0 and fd < FD_SETSIZE:
            # readable as soon as any registered descriptor is ready; EINTR is retried by Python
            select.select([fd], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within microseconds of their time, where the platform
    has epoll (Linux); elsewhere asyncio's default loop."""
    if not hasattr(selectors, "EpollSelector"):
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(_Precise())
