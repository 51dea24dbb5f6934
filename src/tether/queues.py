"""app.queues: a queue's keys. Paused keys (back-pressure pauses a queue's key until a time;
listed, paused and resumed by hand here), the runs ready per key, and the cancel_in_progress
strategy applied after a trigger (the length limit and cancel_newest act inside the trigger's
transaction: storage/flow.py)."""

from __future__ import annotations

import builtins
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tether.durations import Duration
from tether.durations import until as until_time
from tether.engine.triggering import storable_text
from tether.errors import ConfigurationError, InvalidTransition, QueueNotFound, RunNotFound
from tether.models import RunStatus
from tether.options import Queue
from tether.storage.queue_records import QueueRecord
from tether.storage.records import RunRecord

if TYPE_CHECKING:
    from tether.app import Tether

MAX_KEY_DEPTHS = 1000


@dataclass(frozen=True)
class PausedKey:
    """A queue's key none of whose runs is claimed before `until`."""

    queue: str
    key: str  # "" is the runs without a concurrency key
    until: datetime
    reason: str | None
    paused_at: datetime


@dataclass(frozen=True)
class KeyDepth:
    """A queue's key: its runs ready to start (QUEUED) and executing."""

    key: str
    queued: int
    executing: int


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _name(value: object, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > 512 \
            or not storable_text(value):
        raise ConfigurationError(f"{what} must be a string of {'0' if empty else '1'} to 512 "
                                 f"characters without NUL characters, got {value!r}")
    return value


class Queues:
    """`app.queues`: paused keys and per-key depth."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def list(self) -> builtins.list[QueueRecord]:
        """Every queue known to the database (declared by a worker or a trigger)."""
        return self._app.storage.list_queues()

    def paused_keys(self, queue: str | None = None) -> builtins.list[PausedKey]:
        """The keys paused now (of `queue`, or of every queue), by queue and key."""
        if queue is not None:
            _name(queue, "queue")
        rows = self._app.storage.list_paused_keys(queue, self._app.clock.now())
        return [PausedKey(r.queue, r.key, _when(r.until), r.reason, _when(r.created_at))
                for r in rows]

    def pause_key(self, queue: str, key: str, until: Duration | datetime,
                  reason: str = "paused by hand") -> PausedKey:
        """Claim none of the runs of `queue` with concurrency key `key` ("" for those without
        one) before `until`: a timezone-aware datetime, or a duration from now ("10m", seconds,
        a timedelta). A pause already longer is kept. Runs executing go on."""
        self._known(_name(queue, "queue"))
        _name(key, "key", empty=True)
        if not isinstance(reason, str) or len(reason) > 1000 or not storable_text(reason):
            raise ConfigurationError("reason must be text of at most 1000 characters without NUL "
                                     "characters or lone surrogates")
        now = self._app.clock.now()
        at = until_time(until, now, "pause until")
        if at <= now:
            raise ConfigurationError("a key can only be paused until a time in the future")
        self._app.storage.pause_key(queue, key, at, reason, now)
        for paused in self.paused_keys(queue):
            if paused.key == key:
                return paused
        raise InvalidTransition(f"key {key!r} of queue {queue!r} was resumed at once")

    def resume_key(self, queue: str, key: str) -> bool:
        """End a key's pause now; its runs may be claimed at once. False when it was not
        paused."""
        _name(queue, "queue")
        _name(key, "key", empty=True)
        return self._app.storage.resume_key(queue, key)

    def key_depths(self, queue: str, limit: int = 20) -> builtins.list[KeyDepth]:
        """The `limit` keys of `queue` with the most runs ready to start, with their executing
        counts (a fair claim serves the keys in turn; a deep key is one tenant's backlog)."""
        _name(queue, "queue")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_KEY_DEPTHS:
            raise ConfigurationError(f"limit must be 1 to {MAX_KEY_DEPTHS}, got {limit!r}")
        return [KeyDepth(d.key, d.queued, d.executing)
                for d in self._app.storage.key_depths(queue, limit)]

    def _known(self, queue: str) -> None:
        if not any(q.name == queue for q in self._app.storage.list_queues()):
            raise QueueNotFound(queue)

    # -- the cancel_in_progress strategy --------------------------------------------------------
    def after_trigger(self, declared: Queue | None, records: builtins.list[RunRecord]) -> None:
        """After a trigger stored `records` (the runs it created) of a task whose queue is
        `declared` (None: not known, as for a batch of several tasks): the cancel_in_progress
        strategy of their queues. Nothing is read when no queue can have one."""
        if not records:
            return
        settings: dict[str, tuple[str, int | None]] = {}
        if declared is not None:
            settings[declared.name] = (declared.on_key_limit, declared.concurrency)
        if any(r.queue not in settings for r in records):  # a `queue=` option, a batch
            settings.update((q.name, (q.on_key_limit, q.concurrency))
                            for q in self._app.storage.list_queues())
        if any(mode == "cancel_in_progress" for mode, _ in settings.values()):
            self._replace_in_progress(settings, records)

    def _replace_in_progress(self, settings: dict[str, tuple[str, int | None]],
                             records: builtins.list[RunRecord]) -> None:
        """For each key of a cancel_in_progress queue that got a new QUEUED run, keep the key's
        newest `concurrency` runs queued or executing and cancel the older ones, as
        `app.runs.cancel` does (an executing one stops; its children are canceled). Triggers
        racing on one key converge: each keeps the same newest runs."""
        keys = {(r.queue, r.concurrency_key): r.id for r in records
                if r.status == RunStatus.QUEUED
                and settings.get(r.queue, ("queue", None))[0] == "cancel_in_progress"}
        for (queue, key), newest in keys.items():
            keep = settings[queue][1] or 1
            for run_id in self._app.storage.active_key_runs(queue, key)[keep:]:
                reason = (f"replaced by run {newest} (queue {queue!r}, key {key!r}, "
                          "on_key_limit='cancel_in_progress')")
                with contextlib.suppress(InvalidTransition, RunNotFound):  # it ended meanwhile
                    self._app.runs.cancel(run_id, reason)
