"""The worker's housekeeping thread: renews leases (heartbeats, which also write the worker's
state: runs in hand, last claim, stall), detects crashed workers, expires runs whose ttl
passed and deletes finished runs past their retention (tether/retention.py). It runs outside
the event loop, so a task that blocks the loop cannot make its own lease run out."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from tether.clock import Clock
from tether.engine import states
from tether.serialization import dumps
from tether.storage.base import Storage
from tether.storage.records import Finish, Lease, RunRecord, WorkerBeat

log = logging.getLogger("tether.worker")

REAP_INTERVAL = 0.25  # how often a worker looks for expired leases and dead local workers


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_hostname() -> str:
    """The machine name workers record: TETHER_WORKER_HOSTNAME, else the host name. Set it
    when containers on different machines share a host name, so that one machine never takes
    another's workers for its own (and for dead when their pid is not found)."""
    return os.environ.get("TETHER_WORKER_HOSTNAME") or socket.gethostname()


def dead_local_workers(storage: Storage, me: str, now: float, horizon: float) -> list[str]:
    """Workers registered from this machine whose process no longer exists."""
    host = worker_hostname()
    return [w.id for w in storage.list_workers(now - horizon)
            if w.hostname == host and w.id != me and not pid_alive(w.pid)]


def reap(storage: Storage, now: float, dead: list[str]) -> int:
    """Close the attempts of runs whose worker died (CRASHED) and retry or fail them."""
    count = 0
    for record in storage.expired_leases(now, dead):
        if record.lease_token is None:
            continue
        count += _reap_one(storage, record, now)
    return count


def _reap_one(storage: Storage, record: RunRecord, now: float) -> int:
    error = {"message": f"worker {record.worker_id} stopped heartbeating during attempt "
                        f"{record.attempts} (process killed or machine lost)",
             "type": "tether.WorkerCrashed"}
    transition = states.crashed(attempt=record.attempts, max_attempts=record.max_attempts,
                                error_json=dumps(error))
    lease = Lease(record.id, record.lease_token or "", record.attempts, record.worker_id or "")
    # taken over for an expired lease: only if it is still expired when written (a renewal
    # that came first wins); a dead worker's run is taken over whatever its lease says
    expired = record.lease_expires_at is not None and record.lease_expires_at < now
    if storage.finish_attempts([Finish(lease, transition, expired_before=now if expired else None)],
                               now)[0][0] is None:
        return 0
    log.warning("run %s: attempt %d crashed with its worker; %s", record.id, record.attempts,
                transition.reason)
    return 1


class Housekeeper(threading.Thread):
    def __init__(self, storage: Storage, clock: Clock, worker_id: str, lease_seconds: float,
                 running: Callable[[], list[str]],
                 on_renewed: Callable[[set[str], float], None],
                 beat: Callable[[], WorkerBeat] | None = None) -> None:
        super().__init__(daemon=True, name="tether-housekeeping")
        self.storage = storage
        self.clock = clock
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.running = running  # the run ids this worker executes
        # called with the run ids this worker still holds and time.monotonic() when the
        # renewal that says so was sent
        self.on_renewed = on_renewed
        self.beat = beat  # the worker's state the heartbeat writes with it
        self.stopped = threading.Event()
        self.interval = min(max(lease_seconds / 3.0, 0.05), 1.0)
        self._next_full = 0.0
        self.scheduler: Callable[[float], object] | None = None  # fires due schedules
        self.retention: Callable[[float], object] | None = None  # deletes expired history
        self.sweeper: Callable[[float], object] | None = None  # objects/sweep.py: orphans

    def tick(self) -> None:
        """Renew leases and do the slower chores every `interval`; look for runs to take over
        on every call, so a lease that ran out is found within REAP_INTERVAL."""
        now = self.clock.now()
        if time.monotonic() >= self._next_full:
            self._next_full = time.monotonic() + self.interval
            self._full_tick(now)
        dead = dead_local_workers(self.storage, self.worker_id, now, 10 * self.lease_seconds)
        reap(self.storage, now, dead)

    def _full_tick(self, now: float) -> None:
        running = self.running()
        since = time.monotonic()  # read before the time the renewal stores (the next line)
        held = self.storage.renew_leases(self.worker_id, running, self.clock.now(),
                                         self.lease_seconds,
                                         self.beat() if self.beat is not None else None)
        self.on_renewed(held, since)
        self.storage.expire_runs(now)  # each store wakes whom these concern
        self.storage.promote_delayed(now)  # delays passed, sleeps over, token timeouts
        self.storage.resolve_waits(now)  # safety net for runs whose wait ended while parking
        self.storage.upkeep()
        if self.scheduler is not None:
            self.scheduler(now)  # worker/scheduler.py
        if self.retention is not None:
            self.retention(now)  # after the renewal; bounded (BUDGET)
        if self.sweeper is not None:
            self.sweeper(now)  # at most every 10 minutes, on a thread of its own

    def run(self) -> None:
        while not self.stopped.wait(min(self.interval, REAP_INTERVAL)):
            try:
                self.tick()
            except Exception:
                log.exception("housekeeping failed; retrying")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and wait for a tick in progress to end (storage may be closed right after)."""
        self.stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
