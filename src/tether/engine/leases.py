"""Leases by the worker's own clock: no step, `once`, wait or task body starts unless the worker
proved it holds the run's lease recently enough that no other worker can have taken it over.

A lease is proved by a claim or a renewal. It stays valid, by this process's monotonic clock,
until the moment the request that proved it was sent plus the lease, less a margin for clock
drift between machines. Other workers take a run over only after its stored expiry (the same
moment by the database's clock), so a worker that was frozen, swapped out or cut off stops at
its next durable call instead of relying on its later writes being refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Protocol

from tether.clock import Clock
from tether.errors import StorageUnavailable
from tether.storage.base import Storage
from tether.storage.records import Lease

MAX_MARGIN = 5.0  # seconds kept in hand for clock drift between machines, at most


def margin_for(lease_seconds: float) -> float:
    """A fifth of the lease, at most MAX_MARGIN: renewals come every third of it."""
    return min(lease_seconds / 5.0, MAX_MARGIN)


class LeaseCheck(Protocol):
    """What an attempt's scope asks before each durable call (RunScope.check)."""

    def confirm(self, lease: Lease) -> bool: ...


class LeaseClock:
    """Until when (time.monotonic()) each run's lease held by this worker is valid. Written by
    the claim path and the housekeeping thread, read before every durable call."""

    def __init__(self, storage: Storage, clock: Clock, worker_id: str,
                 lease_seconds: float) -> None:
        self.storage = storage
        self.clock = clock
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.span = lease_seconds - margin_for(lease_seconds)
        self._valid: dict[str, tuple[str, float]] = {}  # run id -> (lease token, valid until)
        self._lock = threading.Lock()

    def granted(self, leases: Iterable[Lease], since: float) -> None:
        """Leases claimed by a request sent at `since` (time.monotonic())."""
        until = since + self.span
        with self._lock:
            for lease in leases:
                self._valid[lease.run_id] = (lease.token, until)

    def renewed(self, run_ids: Iterable[str], since: float) -> None:
        """A renewal sent at `since` extended the leases of `run_ids` (those this worker holds)."""
        until = since + self.span
        with self._lock:
            for run_id in run_ids:
                known = self._valid.get(run_id)
                if known is not None and known[1] < until:
                    self._valid[run_id] = (known[0], until)

    def forget(self, lease: Lease) -> None:
        with self._lock:
            if self._valid.get(lease.run_id, ("", 0.0))[0] == lease.token:
                del self._valid[lease.run_id]

    def until(self, lease: Lease) -> float:
        """Until when (time.monotonic()) `lease` is valid by this clock; 0.0 when it is not
        known here (handed to a child process running the attempt: tether/isolation/)."""
        known = self._valid.get(lease.run_id)
        return known[1] if known is not None and known[0] == lease.token else 0.0

    def valid(self, lease: Lease) -> bool:
        known = self._valid.get(lease.run_id)
        return known is not None and known[0] == lease.token and time.monotonic() < known[1]

    def confirm(self, lease: Lease) -> bool:
        """Whether `lease` is valid now; past its time, ask the database once (renewing it if
        this worker still holds it). False when that cannot be proved, database down included."""
        if self.valid(lease):
            return True
        since = time.monotonic()
        try:
            held = self.storage.renew_leases(self.worker_id, [lease.run_id], self.clock.now(),
                                             self.lease_seconds)
            record = self.storage.get_run(lease.run_id) if lease.run_id in held else None
        except StorageUnavailable:
            return False
        if record is None or record.lease_token != lease.token:
            return False
        self.granted([lease], since)
        return True
