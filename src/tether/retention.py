"""Retention: how long finished runs are kept (`Tether(retention=...)`, TETHER_RETENTION,
`@app.task(retention=...)`), the purge behind `app.runs.purge` and `tether runs purge`, and the
workers' share of it (RetentionChore, called by the housekeeping thread)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tether.durations import Duration, seconds
from tether.errors import ConfigurationError
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.retention import FINISHED, SCAN_ROWS, PurgeBatch, PurgeRule

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.worker")

RETENTION_ENV = "TETHER_RETENTION"
PASS_EVERY = 30.0  # a walk over the old runs starts again this long after the last one ended
BUDGET = 0.2  # at most this many seconds of a housekeeping tick go to purging
# after each batch the purge waits PAUSE_RATIO times as long as the batch took (at least
# PAUSE_MIN) while there is work (a run executing or waiting in a queue to start, looked at
# every LOOK_EVERY seconds), so that the workers' claims and endings and the triggers go first:
# on SQLite, whose write lock is global, the purge then holds the database an eighth of the
# time; on PostgreSQL (CPU, row locks and I/O shared, no global lock) a quarter. With nothing
# to do (a quiet hour, a maintenance window) it goes at full speed.
PAUSE_ENV = "TETHER_PURGE_PAUSE_RATIO"
PAUSE_RATIO = {"sqlite": 7.0, "postgres": 3.0}
PAUSE_MIN = 0.001
LOOK_EVERY = 0.2  # seconds between two looks for work
Deleted = Callable[[list[str]], None]  # told the ids of the runs each batch deleted


def retention_setting(value: Duration | None, what: str = "retention") -> float | None:
    """Seconds, or None (keep forever). Zero is refused: it would delete runs as they end."""
    if value is None:
        return None
    amount = seconds(value, what)
    if amount <= 0:
        raise ConfigurationError(f"{what} must be positive (None keeps runs forever), got {value!r}")
    return amount


def app_retention(value: Duration | None) -> float | None:
    """The app's default: the argument, else TETHER_RETENTION, else None (keep forever)."""
    if value is not None:
        return retention_setting(value)
    text = os.environ.get(RETENTION_ENV, "").strip()
    if not text or text.lower() in ("none", "forever"):
        return None
    return retention_setting(text, RETENTION_ENV)


def app_rule(app: Tether, now: float) -> PurgeRule | None:
    """What the app's settings delete at `now`; None when they keep everything. A task with
    its own retention uses it (None: forever); runs of tasks the app does not define use the
    app's."""
    task_before = {task.id: None if task.retention is None else now - task.retention
                   for task in app.tasks.values() if task.retention_set}
    rule = PurgeRule(None if app.retention is None else now - app.retention, task_before)
    return rule if rule.horizon() is not None else None


def statuses_of(status: str | Iterable[str] | None) -> frozenset[str]:
    """Finished statuses named (any case); every finished status when none is."""
    if status is None:
        return FINISHED
    names = [status] if isinstance(status, str) else list(status)
    if not names:
        return FINISHED
    chosen = set()
    for name in names:
        try:
            value = RunStatus(name.upper()).value
        except ValueError:
            value = name
        if value not in FINISHED:
            raise ConfigurationError(
                f"status {name!r} cannot be purged; finished statuses are "
                f"{', '.join(sorted(FINISHED))}")
        chosen.add(value)
    return frozenset(chosen)


def drop_objects(app: Tether, batch: PurgeBatch) -> None:
    """Delete the objects the deleted rows' values named (after the rows' commit: a crash in
    between leaves objects no row names, never a row naming a missing object)."""
    if batch.references:
        from tether.objects.sweep import delete_objects

        try:
            delete_objects(batch.references, app.objects)
        except Exception as exc:  # the store is down: the rows are gone all the same
            log.warning("retention: could not delete %d object(s): %s", len(batch.references), exc)


class Pacing:
    """How long to wait after a batch: `ratio` times its time while there is work (read at
    most every LOOK_EVERY seconds: Storage.has_work), PAUSE_MIN otherwise. The ratio is
    TETHER_PURGE_PAUSE_RATIO, else PAUSE_RATIO's for the backend."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        given = os.environ.get(PAUSE_ENV, "").strip()
        self.ratio = float(given) if given else PAUSE_RATIO[
            "postgres" if storage.io_bound else "sqlite"]
        self._busy = True
        self._look_at = 0.0

    def busy(self) -> bool:
        if time.monotonic() >= self._look_at:
            self._look_at = time.monotonic() + LOOK_EVERY
            self._busy = self.storage.has_work()
        return self._busy

    def wait(self, took: float) -> None:
        time.sleep(max(PAUSE_MIN, took * self.ratio) if self.ratio > 0 and self.busy()
                   else PAUSE_MIN)


def purge(storage: Storage, rule: PurgeRule, dry_run: bool = False,
          on_deleted: Deleted | None = None, limit: int = SCAN_ROWS,
          app: Tether | None = None) -> int:
    """Walk every run the rule may match, a short transaction per `limit` rows; returns how
    many were deleted (dry run: match). With `app`, the objects the rows named go too."""
    after, count, pacing = "", 0, Pacing(storage)
    while True:  # ends: each batch moves `after` forward over a finite table
        began = time.monotonic()
        batch = storage.purge_runs(rule, after, limit, dry_run)
        count += len(batch.runs)
        if app is not None and not dry_run:
            drop_objects(app, batch)
        if batch.runs and on_deleted is not None and not dry_run:
            on_deleted(batch.run_ids)
        if batch.next_after is None:
            return count
        after = batch.next_after
        if batch.runs and not dry_run:
            pacing.wait(time.monotonic() - began)


class RetentionChore:
    """A worker's share of retention: each call (a housekeeping tick) purges for at most
    BUDGET seconds, from the walk's place kept in the database; the walk restarts PASS_EVERY
    seconds after it ended, so runs go within a minute of their deadline (a large backlog
    takes longer: a worker deletes thousands a second while it keeps working)."""

    def __init__(self, app: Tether, on_deleted: Deleted | None = None) -> None:
        self.app = app
        self.on_deleted = on_deleted
        self._pacing: Pacing | None = None

    def __call__(self, now: float) -> int:
        rule = app_rule(self.app, now)
        if rule is None:
            return 0
        storage, count = self.app.storage, 0
        if self._pacing is None:
            self._pacing = Pacing(storage)
        stop = time.monotonic() + BUDGET
        while time.monotonic() < stop:
            began = time.monotonic()
            batch = storage.purge_due(rule, now, PASS_EVERY)
            if batch is None:
                break
            count += len(batch.runs)
            drop_objects(self.app, batch)
            if batch.runs and self.on_deleted is not None:
                self.on_deleted(batch.run_ids)
            if batch.next_after is None:
                break
            if batch.runs:
                self._pacing.wait(time.monotonic() - began)
        if count:
            log.info("retention: deleted %d finished run(s)", count)
        return count
