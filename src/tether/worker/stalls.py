"""Stall detection: a thread of its own pings the worker's event loop and notices when it does
not answer. An async task that calls blocking code (time.sleep, a synchronous HTTP client, a
long computation) holds the loop: no other attempt on it moves, and its metadata and logs are not
flushed. The detector logs one WARNING per stall with the loop thread's stack (the blocking
code's frame is in it), records the stall in the database at once (`workers.stalled_since`,
`workers.stalls`) and logs an INFO when the loop answers again.

It holds no lock the loop needs: a ping is `loop.call_soon_threadsafe(event.set)`, and the
thread only waits on its own events."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

from tether.clock import Clock
from tether.storage.base import Storage

log = logging.getLogger("tether.worker")

DEFAULT_STALL_SECONDS = 1.0
PING_EVERY = 0.25  # at most this long between an answer and the next ping


def loop_stack(thread_id: int) -> str:
    """The current stack of the thread `thread_id`, innermost call last."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "  (the event loop's thread is gone)\n"
    return "".join(traceback.format_stack(frame))


class StallWatch(threading.Thread):
    """Pings `loop` every PING_EVERY (at most) and waits `stall_seconds` for the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: int, stall_seconds: float,
                 storage: Storage, clock: Clock, worker_id: str,
                 on_change: Callable[[float | None, int], None]) -> None:
        super().__init__(daemon=True, name="tether-stall-watch")
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive (0 turns the detector off)")
        self.loop = loop
        self.loop_thread = loop_thread
        self.stall_seconds = stall_seconds
        self.storage = storage
        self.clock = clock
        self.worker_id = worker_id
        # told (stalled_since, stalls) when a stall begins and (None, stalls) when it ends
        self.on_change = on_change
        self.stalls = 0
        self.stalled_since: float | None = None
        self.stopped = threading.Event()
        self._ping: threading.Event | None = None  # the ping waiting for its answer

    def run(self) -> None:
        interval = min(PING_EVERY, self.stall_seconds / 2)
        while not self.stopped.wait(interval):
            self._ping = answered = threading.Event()
            sent, sent_at = time.monotonic(), self.clock.now()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:
                return  # the loop is closed: the worker has ended
            if answered.wait(self.stall_seconds):
                continue
            if self.stopped.is_set():
                return
            self._stalled(sent_at)
            while not answered.wait(0.05):
                if self.stopped.is_set():
                    return
            self._recovered(time.monotonic() - sent)

    def _stalled(self, since: float) -> None:
        self.stalls += 1
        self.stalled_since = since
        log.warning("the event loop has not answered for %.1fs: an async task is running blocking "
                    "code (run it with asyncio.to_thread, or make the task sync). Where the "
                    "loop is:\n%s", self.clock.now() - since, loop_stack(self.loop_thread).rstrip())
        self._record()

    def _recovered(self, took: float) -> None:
        self.stalled_since = None
        log.info("the event loop answers again after %.1fs", took)
        self._record()

    def _record(self) -> None:
        self.on_change(self.stalled_since, self.stalls)
        try:
            self.storage.mark_stalled(self.worker_id, self.stalled_since, self.stalls)
        except Exception as exc:  # the heartbeat writes it again
            log.error("could not record the event loop's stall: %s", exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop at once; from the loop's thread too (which then cannot answer a ping)."""
        self.stopped.set()
        ping = self._ping
        if ping is not None:
            ping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
