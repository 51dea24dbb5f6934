"""Waiting for runs to reach a final status, for any number of threads of one process.

One daemon thread per storage keeps the waiters' listener drained and wakes the threads waiting
for the runs named in its messages. Draining matters on PostgreSQL: the server keeps every
notification until each listening connection has read it, so a connection that listens but is
never read holds back the server's notification queue; once that queue (8 GB) is full, every
commit that notifies fails. The thread stops, and closes its connection, after IDLE_SECONDS
without anyone waiting; the next wait starts a new one.

A message may carry the run's output ("done <id> <output>": PostgreSQL sends it for a run that
completed with a small output, at the durable commit that stored it); a waiter then returns it
without reading the run. The thread remembers the last RECENT messages, so a run that ended
before its waiter registered is seen there. A waiter skips its first read when that memory
covers every end its run can have had: the listener listened, and nothing was forgotten, since
before the run was made (for a run this process triggered, since before its trigger was sent,
by this process's monotonic clock; for another, since its id's time less MARGIN for clocks).
Messages are hints all the same: a waiter reads the run again at least every POLL_FALLBACK.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.clock import id_seconds
from tether.errors import RunNotFound
from tether.models import RunStatus
from tether.wakeup import WAITERS

if TYPE_CHECKING:
    from tether.storage.base import Storage
    from tether.storage.records import RunRecord

POLL_FALLBACK = 0.5  # a lost message delays a waiter by at most this long
IDLE_SECONDS = 10.0
RECENT = 4096  # ends remembered (run id -> output or None)
MARGIN = 1.0  # seconds: how far clocks may disagree on when a run was made


@dataclass(frozen=True)
class Completed:
    """A run that completed, as its end's message told: its output (JSON text), unread."""

    run_id: str
    output: str

_registry: weakref.WeakKeyDictionary[Storage, Watcher] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


class Watcher:
    def __init__(self, storage: Storage) -> None:
        self._storage = weakref.ref(storage)
        self._listener = storage.bus.listen(WAITERS)
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._idle_since = time.monotonic()
        self._recent: OrderedDict[str, str | None] = OrderedDict()
        self._listening_since = time.time()  # (wall clock, as ids are) the listener's start
        self._forgot_up_to = 0.0  # when the newest message no longer remembered came
        self._listening_mono = time.monotonic()  # the same two by the monotonic clock
        self._forgot_mono = 0.0
        self.closed = False
        threading.Thread(target=self._drain_forever, daemon=True, name="tether-finals").start()

    def register(self, run_id: str) -> threading.Event | None:
        """An event set when a message says `run_id` ended (at once if one did already);
        None once this watcher stopped."""
        event = threading.Event()
        with self._lock:
            if self.closed:
                return None
            self._waiting.setdefault(run_id, set()).add(event)
            if run_id in self._recent:
                event.set()
        return event

    def ended(self, run_id: str) -> Completed | None:
        """The run's output, if a remembered message carried it."""
        with self._lock:
            output = self._recent.get(run_id)
        return None if output is None else Completed(run_id, output)

    def saw_every_end(self, run_id: str, sent: float | None = None) -> bool:
        """Whether every message about the run's end reached this watcher and is still
        remembered: it listened, and forgot nothing, since before the run was made. `sent`:
        when this process sent the trigger that made the run (time.monotonic()), if it did."""
        if sent is not None:
            with self._lock:
                return max(self._listening_mono, self._forgot_mono) < sent
        made = id_seconds(run_id)
        with self._lock:
            return made is not None and max(self._listening_since,
                                            self._forgot_up_to) < made - MARGIN

    def unregister(self, run_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiting.get(run_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[run_id]
            if not self._waiting:
                self._idle_since = time.monotonic()

    def _drain_forever(self) -> None:
        generation = self._listener.generation
        try:
            while not self._stop_if_idle():
                messages = self._listener.wait(POLL_FALLBACK)
                reconnected = self._listener.generation != generation
                generation = self._listener.generation
                now = time.time()
                with self._lock:
                    ended = [self._remember(m[5:], now) for m in messages if m.startswith("done ")]
                    if reconnected:  # messages sent meanwhile are lost: every waiter looks again
                        self._listening_since = now
                        self._listening_mono = time.monotonic()
                        woken = [e for events in self._waiting.values() for e in events]
                    else:
                        woken = [e for run_id in ended for e in self._waiting.get(run_id, ())]
                for event in woken:
                    event.set()
        finally:
            self._listener.close()

    def _remember(self, message: str, now: float) -> str:
        """Keep "<id>[ <output>]" among the recent ends (under the lock); returns the id."""
        run_id, _, output = message.partition(" ")
        self._recent[run_id] = output or None
        self._recent.move_to_end(run_id)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
            self._forgot_up_to = now
            self._forgot_mono = time.monotonic()
        return run_id

    def _stop_if_idle(self) -> bool:
        """Stop after IDLE_SECONDS without waiters, or once the storage is gone (nobody can
        be waiting then: a waiter holds the storage)."""
        with self._lock:
            idle = not self._waiting and time.monotonic() - self._idle_since > IDLE_SECONDS
            self.closed = idle or self._storage() is None
        return self.closed


def _watcher(storage: Storage) -> Watcher:
    with _registry_lock:
        watcher = _registry.get(storage)
        if watcher is None or watcher.closed:
            watcher = _registry[storage] = Watcher(storage)
        return watcher


def _register(storage: Storage, run_id: str) -> tuple[Watcher, threading.Event]:
    while True:  # the watcher may have stopped between lookup and registration
        watcher = _watcher(storage)
        event = watcher.register(run_id)
        if event is not None:
            return watcher, event


def _final(storage: Storage, run_id: str,
           read: Callable[[], RunRecord | None] | None) -> tuple[RunRecord | None, str]:
    """(the run if it is final, its status)"""
    record = storage.get_run(run_id) if read is None else read()
    if record is None:
        raise RunNotFound(run_id)
    return (record if RunStatus(record.status).is_final else None), record.status


def wait_final(storage: Storage, run_id: str, timeout: float | None,
               read: Callable[[], RunRecord | None] | None = None,
               sent: float | None = None) -> RunRecord | Completed:
    """Block until the run reaches a final status; TimeoutError after `timeout` seconds.
    `read` reads the run (default: `storage.get_run`). A run whose end's message carried its
    output is returned as `Completed`, unread. `sent`: when this process sent the trigger that
    made the run (time.monotonic()), if it did."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watcher, event = _register(storage, run_id)
    try:
        # after registering: no end goes unnoticed (a message already seen set the event).
        # Where every end of this run is a message seen here, the first read is skipped.
        must_read = not watcher.saw_every_end(run_id, sent)
        if must_read:
            event.clear()  # (a remembered end of an earlier attempt: the read tells)
        status = "unread"
        while True:
            if must_read:
                record, status = _final(storage, run_id, read)
                if record is not None:
                    return record
            left = POLL_FALLBACK if deadline is None else deadline - time.monotonic()
            if event.wait(max(0.0, min(left, POLL_FALLBACK))):
                completed = watcher.ended(run_id)
                if completed is not None:
                    return completed
                event.clear()
            elif left <= 0 and must_read:
                raise TimeoutError(f"run {run_id} is still {status} after {timeout}s")
            must_read = True  # (past the deadline without a read: one look before giving up)
    finally:
        watcher.unregister(run_id, event)
