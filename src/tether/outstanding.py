"""Reading the ends of many runs at once, for the handles one process triggered.

`[h.result() for h in handles]` would cost one read per handle. Instead, a read made for one
handle also reads the other runs this process still holds handles for (up to BATCH), and keeps
the records of those that ended for good on their handles: a COMPLETED or EXPIRED run never
changes again (a retry re-opens only FAILED, TIMED_OUT and CANCELED runs), so their `result()`
needs no read at all. Runs that ended otherwise are forgotten here and read by their own
handle, so a retry is always seen.

Only handles still referenced are tracked (weakly): a trigger whose handle is dropped costs
nothing later. A read is as wide as about twice the others the last one settled (at least
MIN_WIDTH), so runs that end a few at a time are not read a hundred at a time. When a batch
settles none of the others (they are all still going), the next reads are single ones for a
while (`_backoff`, doubling up to MAX_BACKOFF), so a process holding many long runs pays at
most one wide read per that many reads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from itertools import islice
from typing import TYPE_CHECKING, Protocol

from tether.models import RunStatus

if TYPE_CHECKING:
    from tether.finals import Completed
    from tether.storage.base import Storage
    from tether.storage.records import RunRecord

SETTLED = frozenset({RunStatus.COMPLETED, RunStatus.EXPIRED})  # final and never re-opened
BATCH = 100
MIN_WIDTH = 8
MAX_BACKOFF = 1024


class Settles(Protocol):
    """What this module needs of a handle: its run id and a place for its settled record."""

    id: str
    settled: RunRecord | Completed | None


class Outstanding:
    """The handles of one storage whose runs were not yet seen final, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: weakref.WeakValueDictionary[str, Settles] = weakref.WeakValueDictionary()
        self._backoff = 0  # single reads to make before the next batch
        self._skip = 0  # single reads left
        self._width = BATCH  # runs to read in the next batch

    def add(self, handles: Sequence[Settles]) -> None:
        with self._lock:
            for handle in handles:
                self._handles[handle.id] = handle

    def discard(self, run_id: str) -> None:
        """Stop tracking a run whose end is known without a read."""
        with self._lock:
            self._handles.pop(run_id, None)

    def read(self, storage: Storage, run_id: str) -> RunRecord | None:
        """The run's record, read together with other outstanding runs when that pays."""
        with self._lock:
            others: list[str] = []
            if self._skip > 0:
                self._skip -= 1
            else:
                others = [rid for rid in islice(self._handles.keys(), self._width)
                          if rid != run_id][:self._width - 1]
        if not others:
            record = storage.get_run(run_id)
            self._forget([] if record is None else [record], run_id, batched=False)
            return record
        records = storage.get_runs([run_id, *others])
        self._forget(records, run_id, batched=True)
        return next((r for r in records if r.id == run_id), None)

    def _forget(self, records: list[RunRecord], run_id: str, batched: bool) -> None:
        """Settle the handles of runs that ended for good, stop tracking every final run, and
        after a batch that settled none of the others, back off from batches."""
        others_settled = 0
        with self._lock:
            for record in records:
                if not RunStatus(record.status).is_final:
                    continue
                handle = self._handles.pop(record.id, None)
                if handle is not None and record.status in SETTLED:
                    handle.settled = record
                    others_settled += record.id != run_id
            if batched:
                self._width = min(BATCH, MIN_WIDTH + 2 * others_settled)
                self._backoff = 0 if others_settled else min(max(1, 2 * self._backoff),
                                                              MAX_BACKOFF)
                self._skip = self._backoff


_registry: weakref.WeakKeyDictionary[Storage, Outstanding] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def outstanding(storage: Storage) -> Outstanding:
    with _registry_lock:
        found = _registry.get(storage)
        if found is None:
            found = _registry[storage] = Outstanding()
        return found
