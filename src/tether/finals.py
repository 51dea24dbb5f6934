"""Waiting for runs to reach a final status, for any number of threads of one process.

One daemon thread per storage keeps the waiters' listener drained and wakes the threads waiting
for the runs named in its messages. Draining matters on PostgreSQL: the server keeps every
notification until each listening connection has read it, so a connection that listens but is
never read holds back the server's notification queue; once that queue (8 GB) is full, every
commit that notifies fails. The thread stops, and closes its connection, after IDLE_SECONDS
without anyone waiting; the next wait starts a new one.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from tether.errors import RunNotFound
from tether.models import RunStatus
from tether.wakeup import WAITERS

if TYPE_CHECKING:
    from tether.storage.base import Storage
    from tether.storage.records import RunRecord

POLL_FALLBACK = 0.5  # a lost message delays a waiter by at most this long
IDLE_SECONDS = 10.0

_registry: weakref.WeakKeyDictionary[Storage, Watcher] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


class Watcher:
    def __init__(self, storage: Storage) -> None:
        self._storage = weakref.ref(storage)
        self._listener = storage.bus.listen(WAITERS)
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._idle_since = time.monotonic()
        self.closed = False
        threading.Thread(target=self._drain_forever, daemon=True, name="tether-finals").start()

    def register(self, run_id: str) -> threading.Event | None:
        """An event set when a message says `run_id` ended; None once this watcher stopped."""
        event = threading.Event()
        with self._lock:
            if self.closed:
                return None
            self._waiting.setdefault(run_id, set()).add(event)
        return event

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
                with self._lock:
                    if reconnected:  # messages sent meanwhile are lost: every waiter looks again
                        woken = [e for events in self._waiting.values() for e in events]
                    else:
                        woken = [e for m in messages if m.startswith("done ")
                                 for run_id in m[5:].split(" ")  # (one or many)
                                 for e in self._waiting.get(run_id, ())]
                for event in woken:
                    event.set()
        finally:
            self._listener.close()

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


def wait_final(storage: Storage, run_id: str, timeout: float | None,
               read: Callable[[], RunRecord | None] | None = None) -> RunRecord:
    """Block until the run reaches a final status; TimeoutError after `timeout` seconds.
    `read` reads the run (default: `storage.get_run`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watcher, event = _watcher(storage), None
    while event is None:  # the watcher may have stopped between lookup and registration
        event = watcher.register(run_id)
        if event is None:
            watcher = _watcher(storage)
    try:
        while True:
            # after registering: no end goes unnoticed
            record = storage.get_run(run_id) if read is None else read()
            if record is None:
                raise RunNotFound(run_id)
            if RunStatus(record.status).is_final:
                return record
            left = POLL_FALLBACK if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {run_id} is still {record.status} after {timeout}s")
            event.wait(min(left, POLL_FALLBACK))
            event.clear()
    finally:
        watcher.unregister(run_id, event)
