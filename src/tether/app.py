"""The `Tether` app: a registry of tasks and the entry point to runs. Nothing connects at import;
storage opens on first use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from tether.clock import Clock, SystemClock
from tether.durations import Duration
from tether.engine.triggering import TriggerOptions, batch_items, build_runs
from tether.errors import ConfigurationError, UnknownTask
from tether.handles import RunHandle
from tether.keys import ApiKeys
from tether.limits import OUTPUT_ENV, PAYLOAD_ENV, parse_size, size_setting
from tether.objects.references import DEFAULT_THRESHOLD, Objects
from tether.objects.stores import ObjectStore, app_store
from tether.observe.metrics import active as active_metrics
from tether.observe.metrics import count_triggered, enable_if_otel
from tether.observe.tracing import start_trigger, stored
from tether.options import Queue, Retry
from tether.outstanding import outstanding
from tether.queues import Queues
from tether.rate_limits import RateLimits
from tether.retention import app_retention
from tether.runs import Runs
from tether.schedules import Schedules
from tether.storage import database_url, open_storage
from tether.storage.base import Storage
from tether.task import Hook, Task, TaskSpec, queue_record
from tether.tokens import Tokens
from tether.versions import Versions, check_version, env_version, sources_version
from tether.workers import Workers

if TYPE_CHECKING:
    from tether.engine.replay import ReplayReport

F = TypeVar("F", bound=Callable[..., Any])

SPEC_CACHE_SECONDS = 5.0  # how long a task's registry entry is reused when triggering by id


class Tether:
    """`app = Tether()` stores runs in `TETHER_DATABASE_URL`, by default the SQLite file
    `.tether/tether.db` in the working directory.

    `lease_seconds`: how long a worker's claim on a run lasts without a heartbeat; a worker that
    dies is detected after at most this long (at once when it ran on this machine).
    `inline_sleep`: `ctx.sleep` calls up to this many seconds wait in process; longer ones park
    the run (WAITING, no worker or queue slot held) and resume it on any worker when due.
    `max_payload_size`: the most JSON a payload, token completion data or metadata may take
    (bytes, or text such as "10MB", "512KB", "1MiB"); larger ones are refused (PayloadTooLarge).
    `max_output_size`: the same for a task's return value, a step's result or a checkpoint;
    a larger one fails the run at once (OutputTooLarge). Both default to the environment
    (TETHER_MAX_PAYLOAD_SIZE, TETHER_MAX_OUTPUT_SIZE), else 10 MB (10,000,000 bytes).
    `retention`: how long finished runs are kept, counted from when they finished ("30d", a
    timedelta, seconds); the workers then delete them with everything they stored. Default:
    TETHER_RETENTION, else None (kept forever). `@app.task(retention=...)` sets a task's own.
    `offload_threshold` (default 512 KiB): a payload, output, step result, checkpoint, metadata
    or token data whose JSON is larger is written to `object_store` (`file:///dir`,
    `s3://bucket/prefix`, or TETHER_OBJECT_STORE; on SQLite by default the directory
    `<database file>-objects` beside it) and the row keeps a reference; every reader gets the
    value back. On PostgreSQL without a store, values stay in the database.
    """

    def __init__(self, database_url: str | None = None, *, clock: Clock | None = None,
                 lease_seconds: float = 30.0, inline_sleep: float = 1.0,
                 max_payload_size: int | str | None = None,
                 max_output_size: int | str | None = None,
                 version: str | None = None, pin: bool = True,
                 offload_threshold: int | str | None = None,
                 object_store: str | ObjectStore | None = None,
                 retention: Duration | None = None) -> None:
        self.max_payload_size = size_setting(max_payload_size, "max_payload_size", PAYLOAD_ENV)
        self.max_output_size = size_setting(max_output_size, "max_output_size", OUTPUT_ENV)
        self.offload_threshold = (DEFAULT_THRESHOLD if offload_threshold is None
                                  else parse_size(offload_threshold, "offload_threshold"))
        self._object_store = object_store
        self._objects: Objects | None = None
        # seconds finished runs are kept (None: forever); tether/retention.py
        self.retention = app_retention(retention)
        if lease_seconds <= 0:
            raise ConfigurationError("lease_seconds must be positive")
        if inline_sleep < 0:
            raise ConfigurationError("inline_sleep must be zero or positive")
        self.inline_sleep = inline_sleep
        self._url = database_url
        self.clock: Clock = clock or SystemClock()
        self.lease_seconds = lease_seconds
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._storage: Storage | None = None
        self._lock = threading.Lock()
        self._queues_known: set[tuple[object, ...]] = set()
        self._specs: dict[str, tuple[TaskSpec, float]] = {}
        self._version = check_version(version) if version is not None else None
        self._bound = False  # bound_to: another database for a while (tether.testing)
        self.pin = pin  # the tasks' default for `@app.task(pin=...)`
        self.runs = Runs(self)
        self.versions = Versions(self)
        self.workers = Workers(self)
        self.tokens = Tokens(self)
        self.schedules = Schedules(self)
        self.keys = ApiKeys(self)
        self.queues = Queues(self)
        self.rate_limits = RateLimits(self)

    @property
    def version(self) -> str:
        """The code version this app's workers run: `Tether(version=...)`, else TETHER_VERSION,
        else a hash of the sources of the tasks it defines (it changes when any task's code
        does). A run records the version of the worker that first executes it."""
        if self._version is not None:
            return self._version
        return env_version() or sources_version(self.tasks.values())

    @version.setter
    def version(self, value: str) -> None:
        self._version = check_version(value)

    @property
    def database_url(self) -> str:
        """The database this app uses: the argument, else TETHER_DATABASE_URL, else the
        SQLite default."""
        return database_url(self._url)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    storage = open_storage(self._url)
                    storage.clock = self.clock
                    self._storage = storage
                    metrics = enable_if_otel()  # a MeterProvider set by now: metrics on
                    if metrics is not None:
                        metrics.watch_database(self)
        return self._storage

    @property
    def objects(self) -> Objects:
        """Where values over `offload_threshold` go (objects/): `object_store`, else
        TETHER_OBJECT_STORE, else on SQLite a directory beside the database file; on PostgreSQL
        without one, `objects.store` is None and values stay in the database."""
        if self._objects is None:
            self._objects = Objects(app_store(self._object_store, self.database_url),
                                    self.offload_threshold)
        return self._objects

    def close(self) -> None:
        """Close the database connections (the next use opens them again)."""
        metrics = active_metrics()
        if metrics is not None:
            metrics.forget_database(self)  # (a scrape would open the storage again)
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    @contextmanager
    def bound_to(self, database_url: str, *, clock: Clock | None = None,
                 inline_sleep: float | None = None,
                 object_store: str | ObjectStore | None = None) -> Iterator[Tether]:
        """For tests (tether.testing): inside the block this app, its tasks and everything
        reached through them (`task.trigger`, `app.runs`, `app.tokens`, a server made with it)
        use `database_url`, `clock`, `inline_sleep` and `object_store` instead of the app's own
        settings (which cannot win over them, nor can TETHER_DATABASE_URL); when it ends, that
        storage is closed and the app's own come back, its storage as it was (if it was open,
        nothing went through it meanwhile). One binding at a time."""
        if self._bound:
            raise ConfigurationError("this app is bound to another database already (one "
                                     "tether.testing environment at a time)")
        saved = (self._url, self.clock, self._storage, self._objects, self._object_store,
                 self.inline_sleep, self._queues_known, self._specs)
        self._bound = True
        self._url, self._storage, self._objects = database_url, None, None
        self._object_store = object_store
        self.clock = clock or self.clock
        self.inline_sleep = self.inline_sleep if inline_sleep is None else inline_sleep
        self._queues_known, self._specs = set(), {}
        try:
            yield self
        finally:
            try:
                self.close()
            finally:
                (self._url, self.clock, self._storage, self._objects, self._object_store,
                 self.inline_sleep, self._queues_known, self._specs) = saved
                self._bound = False

    # -- defining tasks -----------------------------------------------------------------------
    @overload
    def task(self, fn: F) -> Task[Any, Any]: ...

    @overload
    def task(self, fn: None = None, *, id: str | None = None, retry: Retry | None = None,
             queue: Queue | str | None = None, max_duration: timedelta | float | None = None,
             on_success: Hook | None = None,
             on_failure: Hook | None = None, cron: str | None = None,
             timezone: str | None = None,
             cron_missed: str = "once", pin: bool | None = None,
             retention: Duration | None = ..., isolation: str = "none",
             memory_limit: int | str | None = None,
             respect_retry_after: bool = False) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, fn: F | None = None, **options: Any) -> Any:
        """Register a function as a task: `@app.task` or `@app.task(id=..., retry=..., ...)`.

        `isolation="process"` runs its attempts in child processes the worker keeps warm, so
        `max_duration` and cancel stop even code that never yields (the process is killed) and
        a crash in native code fails only that attempt; `memory_limit` ("2GB", bytes) then caps
        what an attempt may allocate. The default, "none", runs them in the worker's process."""
        def register(func: F) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(self, func, **options)
            if task.id in self.tasks and self.tasks[task.id].fn is not func:
                raise ConfigurationError(f"two tasks share the id {task.id!r}")
            self.tasks[task.id] = task
            return task

        return register(fn) if fn is not None else register

    def spec_for(self, task_id: str) -> tuple[TaskSpec, Callable[[Any], Any]]:
        """How to create runs of a task known by id: from this process's code, else from the
        registry that workers keep in the database."""
        task = self.tasks.get(task_id)
        if task is not None:
            return task.spec, task.validate
        cached = self._specs.get(task_id)
        if cached is not None and time.monotonic() - cached[1] < SPEC_CACHE_SECONDS:
            return cached[0], cached[0].validate
        record = self.storage.get_task(task_id)
        if record is None:
            known = sorted({*self.tasks, *(t.id for t in self.storage.list_tasks())})
            raise UnknownTask(task_id, known)
        spec = TaskSpec.from_record(record)
        self._specs[task_id] = (spec, time.monotonic())
        return spec, spec.validate

    # -- triggering ---------------------------------------------------------------------------
    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> RunHandle[Any]:
        """Trigger a task by id, without importing its code."""
        spec, validate = self.spec_for(task_id)
        return self._create(spec, validate, [(payload, options)])[0]

    def batch_trigger(self, task_id: str, items: list[Any], **options: Any) -> list[RunHandle[Any]]:
        """Trigger many runs of a task by id in one transaction; items are payloads or
        `BatchItem`s with options of their own."""
        spec, validate = self.spec_for(task_id)
        return self._create(spec, validate, batch_items(items, options))

    def _trigger(self, task: Task[Any, Any], payload: Any, options: dict[str, Any]) -> RunHandle[Any]:
        return self._create(task.spec, task.validate, [(payload, options)])[0]

    def _batch_trigger(self, task: Task[Any, Any], items: list[Any],
                       options: dict[str, Any]) -> list[RunHandle[Any]]:
        return self._create(task.spec, task.validate, batch_items(items, options))

    def _create(self, spec: TaskSpec, validate: Callable[[Any], Any],
                items: list[tuple[Any, dict[str, Any]]]) -> list[RunHandle[Any]]:
        now = self.clock.now()
        runs = build_runs(spec, validate, items, now, self.max_payload_size, self.objects)
        storage = self.storage
        self._ensure_queue(spec.queue, now)
        span = start_trigger(spec.id, runs[0].queue, runs) if runs else None  # None: no tracing
        sent = time.monotonic()  # (a waiter for a run made here needs no margin for clocks)
        created = stored(span, lambda: storage.create_runs(runs, now))  # wakes the workers
        count_triggered(created)
        self.queues.after_trigger(spec.queue, [r for r, is_new in created if is_new])
        handles: list[RunHandle[Any]] = [RunHandle(storage, record.id, not is_new,
                                                   sent if is_new else None)
                                         for record, is_new in created]
        outstanding(storage).add(handles)  # their results can then be read many at a time
        return handles

    # -- checking a deploy ---------------------------------------------------------------------
    def check_replay(self, task: str | None = None, status: list[str] | str | None = None,
                     include_failed: bool = False) -> ReplayReport:
        """Replay every unfinished run (DELAYED, QUEUED, EXECUTING, WAITING; or `status`) of
        `task` (default: all) against its stored history with this app's code, to learn which
        would fail after a deploy. `include_failed` adds the runs `runs.retry` could restart.
        Nothing is executed or written: each durable call returns its stored result and the
        first one not stored ends that run's replay (code between durable calls does run)."""
        from tether.engine.replay import check_replay

        return check_replay(self, task, status, include_failed)

    def _ensure_queue(self, queue: Queue, now: float) -> None:
        record = queue_record(queue)
        key = (queue.name, *record.settings)
        if key not in self._queues_known:
            self.storage.ensure_queues([record], now)
            self._queues_known.add(key)


__all__ = ["Tether", "TriggerOptions"]
