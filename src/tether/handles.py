"""Handles returned by `trigger`: the run's id, its status, and a way to wait for its result."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tether.errors import RunFailed, RunNotFound
from tether.finals import Completed, wait_final
from tether.models import Run, RunStatus
from tether.outstanding import outstanding
from tether.serialization import loads

if TYPE_CHECKING:
    from tether.storage.base import Storage
    from tether.storage.records import RunRecord

R = TypeVar("R")


def outcome(record: RunRecord | Completed) -> Any:
    """The output of a completed run; RunFailed for any other final status."""
    if isinstance(record, Completed):
        return loads(record.output)
    if record.status == RunStatus.COMPLETED:
        return loads(record.output)
    raise RunFailed(record.id, record.status, loads(record.error))


class RunHandle(Generic[R]):
    """A run that this process triggered or looked up: what `trigger` returns. `id` is the
    run's id; `is_cached` is True when an idempotency key matched an earlier run."""

    def __init__(self, storage: Storage, run_id: str, is_cached: bool = False,
                 sent: float | None = None) -> None:
        self._storage = storage
        self.id = run_id
        self.is_cached = is_cached  # an idempotency key matched: this is the earlier run
        # when this process sent the trigger that made the run (time.monotonic()), if it did
        self._sent = sent
        # its end, once read with another handle's (or told by the message announcing it)
        self.settled: RunRecord | Completed | None = None

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    def retrieve(self) -> Run:
        """The run as stored now."""
        record = self._storage.get_run(self.id)
        if record is None:
            raise RunNotFound(self.id)
        return record.to_run()

    def status(self) -> RunStatus:
        """The run's status now."""
        return self.retrieve().status

    def result(self, timeout: float | None = None) -> R:
        """Wait for the run to finish and return its output; raises RunFailed if it did not
        complete, TimeoutError if it is still going after `timeout` seconds."""
        if self.settled is not None:  # COMPLETED or EXPIRED: it cannot change any more
            return outcome(self.settled)  # type: ignore[no-any-return]
        pending = outstanding(self._storage)
        record = wait_final(self._storage, self.id, timeout,
                            read=lambda: pending.read(self._storage, self.id), sent=self._sent)
        if isinstance(record, Completed):  # told with its end: never read, nothing to track
            pending.discard(self.id)
            self.settled = record
        return outcome(record)  # type: ignore[no-any-return]

    async def result_async(self, timeout: float | None = None) -> R:
        """`result` for async code: the wait runs in a thread, not on your event loop."""
        return await asyncio.to_thread(self.result, timeout)
