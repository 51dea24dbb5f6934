"""The interface of a step pipeline: a storage whose writes each cost a network round trip
(PostgreSQL) may write the rows of running attempts behind their back, in the order they were
sent, and let an attempt wait only where a promise needs the database (see RunScope.save/drain).

A storage without one (SQLite: a write costs microseconds) has `pipeline = None`, and every
row is written before `save_step` returns.
"""

from __future__ import annotations

from typing import Protocol

from tether.storage.records import Flush, Lease, StepRecord


class StepPipeline(Protocol):
    def send(self, lease: Lease, step: StepRecord | None, flush: Flush | None,
             durable: bool = False) -> None:
        """Queue a step row (and/or the metadata and log lines that ride along) of the attempt
        holding `lease`; returns at once. Rows are written in the order sent, each fenced by its
        lease token. After a row of an attempt was refused or lost, nothing more of that attempt
        is written. `durable`: the batch that carries it waits for the WAL flush."""
        ...

    def drain(self, lease: Lease) -> None:
        """Wait until every row sent for `lease` is committed and flushed to disk (so nothing
        written after this call can be stored without them). Raises LeaseLost when a row was
        refused, or the error that kept the rows from being written."""
        ...

    def settled(self, lease: Lease) -> bool:
        """Nothing sent for `lease` is waiting to be written or flushed (drain would not wait)."""
        ...

    def failure(self, lease: Lease) -> BaseException | None:
        """Why rows of `lease` were not written (LeaseLost, StorageUnavailable, ...), if so."""
        ...

    def forget(self, lease: Lease) -> None:
        """The attempt ended: drop what is kept about it (rows still queued are written)."""
        ...

    def close(self) -> None:
        """Write what is queued (for a bounded time) and stop."""
        ...
