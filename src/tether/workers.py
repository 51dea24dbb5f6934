"""The workers registry: `app.workers.list()`, every worker with what it holds and its state.

Each worker records itself when it starts (host, pid, version, queues, concurrency) and its
heartbeat writes its runs in hand, its last claim and its event loop's stalls. A state is worked
out when read:

- "live": heartbeating;
- "stalled": heartbeating, but its event loop has not answered for more than its
  `stall_seconds` (an async task runs blocking code);
- "idle-with-work": heartbeating with free places, but it claimed nothing for IDLE_SECONDS while
  runs of its tasks were ready that long in a queue a claim could take them from (not paused,
  under its concurrency, without a rate limit, in a key not paused);
- "stopped": it shut down cleanly;
- "gone": no heartbeat for `gone_after` seconds (max(60, 3 * lease) by default,
  TETHER_WORKERS_GONE_AFTER overrides it), or its process no longer exists on this machine
  (a killed worker)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from tether.errors import ConfigurationError
from tether.models import to_datetime
from tether.storage.base import Storage
from tether.storage.queue_records import QueueRecord
from tether.storage.records import WorkerRecord
from tether.worker.housekeeping import pid_alive, worker_hostname

if TYPE_CHECKING:
    from tether.app import Tether

WorkerState = Literal["live", "stalled", "idle-with-work", "stopped", "gone"]

GONE_ENV = "TETHER_WORKERS_GONE_AFTER"
GONE_AFTER = 60.0  # at least this long without a heartbeat before a worker counts as gone
IDLE_SECONDS = 5.0  # no claim for this long while runs were ready this long: idle-with-work
RECENT = 24 * 3600.0  # list() shows workers seen this recently unless asked for all
LISTED = 1000  # list() shows at most this many workers: those seen last (live ones first)
KEYS_LOOKED_AT = 100  # keys of a queue with paused keys read for one not paused (most runs first)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as the registry knows it."""

    id: str
    hostname: str
    pid: int
    version: str | None
    """The code version it runs."""
    queues: list[str]
    """The queues it serves; `["*"]` for every queue of its tasks."""
    concurrency: int
    """How many runs it executes at once."""
    started_at: datetime
    last_seen_at: datetime
    """Its last heartbeat."""
    stopped_at: datetime | None
    """When it shut down cleanly; None while it runs (or if it was killed)."""
    running: int
    """Runs in hand at its last heartbeat."""
    stalled_since: datetime | None
    """Its event loop has not answered since then; None when it answers."""
    stalls: int
    """How many times its event loop stalled."""
    state: WorkerState
    """live, stalled, idle-with-work, stopped or gone (see `tether.workers`)."""
    last_claim_at: datetime | None = None
    """When a claim last gave it a run."""
    tasks: tuple[str, ...] = ()
    """The task ids it serves."""


def gone_after(lease_seconds: float) -> float:
    """Seconds without a heartbeat after which a worker counts as gone."""
    value = os.environ.get(GONE_ENV, "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise ConfigurationError(f"{GONE_ENV} must be a positive number of seconds, "
                                     f"got {value!r}")
        return seconds
    return max(GONE_AFTER, 3 * lease_seconds)


class Workers:
    """`app.workers`: the worker processes recorded in the database."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def list(self, all: bool = False) -> list[WorkerInfo]:
        """Workers seen in the last 24 hours (every one ever recorded with `all=True`), the
        newest first; at most LISTED (1,000) of them, those seen last (the live ones)."""
        storage, now = self._app.storage, self._app.clock.now()
        records = storage.workers_seen(None if all else now - RECENT, LISTED)
        horizon = gone_after(self._app.lease_seconds)
        host = worker_hostname()
        states = {r.id: _base_state(r, now, horizon, host) for r in records}
        idle = [r for r in records if states[r.id] == "live" and _could_claim(r, now)]
        if idle:
            for r in _with_work(self._app, idle, now):
                states[r.id] = "idle-with-work"
        ordered = sorted(records, key=lambda r: -r.started_at)
        return [_info(r, states[r.id]) for r in ordered]


def _base_state(r: WorkerRecord, now: float, horizon: float, host: str) -> WorkerState:
    if r.stopped_at is not None:
        return "stopped"
    if now - r.last_seen_at > horizon or (r.hostname == host and not pid_alive(r.pid)):
        return "gone"
    return "stalled" if r.stalled_since is not None else "live"


def _could_claim(r: WorkerRecord, now: float) -> bool:
    """Free places and no claim for IDLE_SECONDS (nor since it started)."""
    last = max(r.started_at, r.last_claim_at or 0.0)
    return r.running < r.concurrency and now - last > IDLE_SECONDS


def _served(r: WorkerRecord) -> tuple[set[str] | None, set[str] | None]:
    """(task ids, queues) the worker serves; None for any."""
    tasks = set(json.loads(r.tasks)) if r.tasks else None
    queues = set(json.loads(r.queues or '["*"]'))
    return tasks, (None if "*" in queues else queues)


def _open(storage: Storage, record: QueueRecord | None, executing: int,
          paused_keys: set[str]) -> bool:
    """Whether a claim could give a free worker a ready run of this queue: it is not paused, has
    a place under its concurrency (counted for the whole queue: a queue with keys may have one
    left that this does not see, never the reverse) and no rate limit (its runs may rightly wait
    for their rate), and one of its keys with ready runs is not paused."""
    if record is None:
        return True
    if record.paused or record.rate_limit is not None:
        return False
    if record.concurrency is not None and executing >= record.concurrency:
        return False
    if not paused_keys:
        return True
    return any(k.queued > 0 and k.key not in paused_keys
               for k in storage.key_depths(record.name, KEYS_LOOKED_AT))


def _with_work(app: Tether, candidates: list[WorkerRecord], now: float) -> list[WorkerRecord]:
    """The candidates for which runs of their tasks have been ready IDLE_SECONDS in a queue
    a claim could take them from (see `_open`)."""
    storage = app.storage
    ready = storage.ready_since(now - IDLE_SECONDS)
    if not ready:
        return []
    limits = {q.name: q for q in storage.list_queues()}
    stats = storage.queue_stats()
    paused: dict[str, set[str]] = {}
    for key in storage.list_paused_keys(None, now):
        paused.setdefault(key.queue, set()).add(key.key)
    open_queues = {queue for queue in {q for _, q, _ in ready}
                   if _open(storage, limits.get(queue), stats.get(queue, (0, 0))[1],
                            paused.get(queue, set()))}
    found = []
    for r in candidates:
        tasks, queues = _served(r)
        if any(q in open_queues and (tasks is None or t in tasks)
               and (queues is None or q in queues) for t, q, _ in ready):
            found.append(r)
    return found


def _info(r: WorkerRecord, state: WorkerState) -> WorkerInfo:
    tasks = tuple(json.loads(r.tasks)) if r.tasks else ()
    return WorkerInfo(
        id=r.id, hostname=r.hostname, pid=r.pid, version=r.version,
        queues=list(json.loads(r.queues or '["*"]')), concurrency=r.concurrency,
        started_at=_dt(r.started_at), last_seen_at=_dt(r.last_seen_at),
        stopped_at=to_datetime(r.stopped_at), running=r.running,
        stalled_since=to_datetime(r.stalled_since), stalls=r.stalls, state=state,
        last_claim_at=to_datetime(r.last_claim_at), tasks=tasks)


def _dt(ts: float) -> datetime:
    value = to_datetime(ts)
    assert value is not None
    return value
