"""When the next delayed run or wait of a worker's tasks is due: what its idle loop's timeout
is made of. Where each storage call is a round trip (PostgreSQL), the answer is kept while
nothing can have changed it, and a call made while attempts run goes to a thread, so an attempt
that just ended is committed meanwhile rather than after it.

What can make a run due sooner reaches the worker as a message (a delayed trigger, a run of a
rate-limited queue, whose claim may hold it back until its bucket has room, a retry of another
worker's run queued, a cancel, a freed slot: anything but READY), as an attempt of its own that
ended without ending its run (a retry, a wait), or not at all (another worker's retry or wait,
which that worker times itself): the worker forgets the answer on the first two and on each
poll. (A claim that takes fewer runs than it asked for forgets nothing: a run held back by a
rate was announced as such, and an answer grown stale only wakes the worker early, once.)"""

from __future__ import annotations

import asyncio

from tether.storage.base import Storage


class NextDue:
    def __init__(self, storage: Storage, task_ids: list[str], queues: list[str] | None) -> None:
        self.storage = storage
        self.task_ids = task_ids
        self.queues = queues
        self.known = False
        self._due: float | None = None

    def forget(self) -> None:
        self.known = False

    def cached(self) -> bool:
        """Whether `get` answers without a storage call."""
        return self.known and self.storage.io_bound

    async def get(self, now: float, running: bool) -> float | None:
        storage = self.storage
        if not storage.io_bound:
            return storage.next_ready_at(self.task_ids, self.queues, now)
        if self.known and (self._due is None or self._due > now):
            return self._due  # (one passed already, e.g. a bucket's room just taken: look again)
        self.known = True  # (what changes meanwhile makes it unknown again)
        try:
            if running:
                due = await asyncio.to_thread(storage.next_ready_at, self.task_ids,
                                              self.queues, now)
            else:
                due = storage.next_ready_at(self.task_ids, self.queues, now)
        except BaseException:
            self.known = False
            raise
        self._due = due
        return due
