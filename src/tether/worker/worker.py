"""The worker: claims runs of the tasks it serves, executes them (async tasks on its event loop,
sync tasks in threads, tasks with isolation="process" in its child processes), and wakes on
messages instead of polling."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from tether.clock import new_id
from tether.engine.attempt import AttemptRunner
from tether.engine.execution import Execution
from tether.engine.leases import LeaseClock
from tether.engine.scope import install_log_handler
from tether.errors import ConfigurationError, LeaseLost, StorageUnavailable
from tether.isolation.pool import ProcessPool
from tether.objects.sweep import Sweeper
from tether.observe.metrics import MetricsServer, enable_if_otel
from tether.observe.metrics import enable as enable_metrics
from tether.retention import RetentionChore
from tether.storage.records import (
    ClaimedRun,
    WorkerBeat,
    WorkerRecord,
)
from tether.task import IN_PROCESS
from tether.wakeup import WORKERS, Listener
from tether.worker.claims import BUSY_CLAIMS
from tether.worker.due import NextDue
from tether.worker.housekeeping import Housekeeper, dead_local_workers, reap, worker_hostname
from tether.worker.line import Line
from tether.worker.messages import Messages
from tether.worker.offers import Offering
from tether.worker.owed import OwedHooks
from tether.worker.scheduler import Scheduler
from tether.worker.stalls import DEFAULT_STALL_SECONDS, StallWatch
from tether.worker.timers import new_event_loop
from tether.worker.wake import Wake

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.worker")


class Worker(Offering, Messages):
    """`Worker(app).run_forever()` serves every task of `app`; `queues` limits it to some queues.
    `stall_seconds` (default 1; 0: off): an async task holding the event loop this long is
    reported (one warning with its stack; the worker shows as stalled; `stalls` counts them).
    `metrics_port`: serve Prometheus metrics at http://`metrics_host`:PORT/metrics while it runs
    (0: any free port; `metrics_server.port` says which); metrics are also on when an
    OpenTelemetry MeterProvider is set (docs: Observability)."""

    def __init__(self, app: Tether, *, concurrency: int = 10, queues: list[str] | None = None,
                 shutdown_grace: float = 30.0, poll_interval: float = 1.0,
                 stall_seconds: float = DEFAULT_STALL_SECONDS,
                 metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 schedules: bool = True) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if not stall_seconds >= 0:
            raise ConfigurationError(f"stall_seconds must be 0 (off) or more, got {stall_seconds}")
        if not app.tasks:
            raise ConfigurationError("the app defines no tasks; nothing for a worker to run")
        self.app = app
        self.concurrency = concurrency
        self.queues = queues
        self.shutdown_grace = shutdown_grace
        self.poll_interval = poll_interval
        # the event loop not answering for this long is a stall (worker/stalls.py); 0: off
        self.stall_seconds = stall_seconds
        self.stalls = 0  # how many times the event loop stalled
        self.stalled_since: float | None = None  # the loop has not answered since (epoch)
        self._last_start: float | None = None  # time.monotonic() when a run last started
        # False: leave declared schedules alone and fire none (a worker of internal tasks, like
        # the alert deliverer inside `tether serve`, whose app is not the user's code)
        self.schedules = schedules
        self.id = new_id("worker")
        self.version = app.version  # the code version it runs, recorded by the runs it starts
        # tasks whose runs it may go on with whatever version started them (pin=False)
        self.unpinned = [t.id for t in app.tasks.values()
                         if not (app.pin if t.pin is None else t.pin)]
        self.task_ids = [t.id for t in app.tasks.values()
                         if queues is None or t.queue.name in queues]
        if not self.task_ids:
            raise ConfigurationError(f"no task of the app is in the queue(s) {queues}")
        self.due = NextDue(app.storage, self.task_ids, queues)  # the idle loop's timeout
        # a rate-limited queue: a claim it holds back is tried again when its bucket has room
        # (next_ready_at, asked as of that claim's time: a bucket that had room by then is not
        # waited for again, so nothing spins)
        self.rated = any(app.tasks[t].queue.rate_limit is not None for t in self.task_ids)
        self._claim_now = 0.0  # the time of this worker's last claim
        # A worker whose last claim got nothing while a rate held runs back claims a quarter of an
        # interval (at most 20 ms) after the bucket has room, behind the worker that got the last
        # run (which claims right then): one claim per slot instead of one per worker, and a
        # claim that late still keeps the bucket's beat (migration 0017). (Its other due times,
        # a delay or a sleep, come as late: 20 ms at most.)
        self.rate_defer = min((min(0.02, rate.seconds / rate.limit / 4) for t in self.task_ids
                               if (rate := app.tasks[t].queue.rate_limit) is not None),
                              default=0.0)
        self._rate_follower = False  # the last claim got nothing
        self.running: dict[str, Execution] = {}
        self._reserved = 0  # slots asked for by a claim still in flight
        self._backlog = False  # the last claim took all it asked for: more runs may be waiting
        self._lining_up = False
        self._news = True  # a message or a poll since the last claim: runs may be claimable
        self._recent_claims = collections.deque([0.0] * BUSY_CLAIMS, maxlen=BUSY_CLAIMS)
        self._refill_asked = False  # the commit being written claims runs too
        self.line = Line()  # runs held in line for the places this worker holds
        self._heirs: dict[str, ClaimedRun] = {}  # taken from the line, their hand-over in flight
        self._offer, self._offers_made = None, collections.OrderedDict()
        self._handing_back: set[asyncio.Task[None]] = set()
        install_log_handler()
        self.runner = AttemptRunner(app)
        self.runner.batcher.refill = self
        # leases by this worker's own clock: no work starts on a lease it cannot prove
        self.leases = LeaseClock(app.storage, app.clock, self.id, app.lease_seconds)
        self.runner.leases = self.leases
        if any(app.tasks[t].isolation == IN_PROCESS for t in self.task_ids):
            # child processes for the attempts of tasks with isolation="process"
            self.runner.isolation = ProcessPool(app, self.leases, concurrency)
        self.attempts_started = 0  # claimed directly or in the transaction that ended others
        self._wake = Wake()
        self._stopping = False
        self._listener: Listener | None = None
        self._listening: tuple[int, int] | None = None  # (fd, generation) the loop watches
        self._housekeeper: Housekeeper | None = None
        self._stall_watch: StallWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # metrics: on with a port to serve them at (0: any free one), or a MeterProvider set;
        # off, the attempts pay one check each
        self.metrics_port, self.metrics_host = metrics_port, metrics_host
        self.metrics = enable_metrics() if metrics_port is not None else enable_if_otel()
        self.runner.metrics = self.metrics
        self.metrics_server: MetricsServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Register tasks and this worker, recover runs of dead workers, start heartbeats."""
        storage, now = self.app.storage, self.app.clock.now()
        self._serve_metrics()
        tasks = [self.app.tasks[t] for t in self.task_ids]
        queues = {t.queue.name: t.queue_record() for t in tasks}
        storage.register_tasks([t.record(now) for t in tasks], list(queues.values()))
        scheduler = Scheduler(self.app)
        if self.schedules:
            scheduler.sync_declared(now)  # schedules declared with @app.task(cron=...)
        storage.register_worker(WorkerRecord(
            self.id, worker_hostname(), os.getpid(), json.dumps(self.queues or ["*"]),
            self.concurrency, now, now, None, self.version, tasks=json.dumps(self.task_ids)))
        reap(storage, now, dead_local_workers(storage, self.id, now, 10 * self.app.lease_seconds))
        self._loop = asyncio.get_running_loop()
        self._listener = storage.bus.listen(WORKERS)
        self._watch_listener()
        self._housekeeper = Housekeeper(storage, self.app.clock, self.id, self.app.lease_seconds,
                                        self._running_ids, self._renewed, self._beat)
        self._housekeeper.scheduler = scheduler.fire_due if self.schedules else None
        self._housekeeper.retention = RetentionChore(self.app)
        objects = self.app.objects
        if objects.store is not None:
            self._housekeeper.sweeper = Sweeper(objects, storage).maybe
            log.info("values over %s bytes are kept in the object store %s",
                     f"{objects.threshold:,}", objects.store.location)
        else:
            log.info("no object store (TETHER_OBJECT_STORE): large values stay in the database, "
                     "up to max_payload_size / max_output_size")
        self._housekeeper.start()
        if self.runner.isolation is not None:
            self.runner.isolation.warm()
            isolated = [t for t in self.task_ids if self.app.tasks[t].isolation == IN_PROCESS]
            log.info("task(s) %s run in child processes (up to %d, kept warm)",
                     ", ".join(isolated), self.concurrency)
        if self.stall_seconds > 0:
            self._stall_watch = StallWatch(self._loop, threading.get_ident(), self.stall_seconds,
                                           storage, self.app.clock, self.id, self._stall_changed)
            self._stall_watch.start()
        log.info("worker %s (version %s) serving %d task(s): %s", self.id, self.version,
                 len(self.task_ids), ", ".join(self.task_ids))

    def _stall_changed(self, stalled_since: float | None, stalls: int) -> None:
        self.stalled_since, self.stalls = stalled_since, stalls

    def _beat(self) -> WorkerBeat:
        """From the housekeeping thread: the state each heartbeat writes."""
        last = self._last_start
        claimed = None if last is None else self.app.clock.now() - (time.monotonic() - last)
        return WorkerBeat(len(self.running), claimed, self.stalled_since, self.stalls)

    def _serve_metrics(self) -> None:
        if self.metrics is None:
            return
        self.metrics.watch_worker(self)
        self.metrics.watch_database(self.app)
        if self.metrics_port is not None and self.metrics_server is None:
            self.metrics_server = MetricsServer(self.metrics, self.metrics_host, self.metrics_port)
            log.info("metrics at %s", self.metrics_server.url)

    def stop(self) -> None:
        """Stop claiming; `run` returns once running attempts finished or were handed back."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self.start()
        try:
            await self._loop_until_stopped()
            await self._shutdown()
        finally:
            self._close()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT (a second signal hands running attempts back at once)."""
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        await self.run()

    def _on_signal(self) -> None:
        if self._stopping:
            self.shutdown_grace = 0
            log.warning("second signal: handing running attempts back now")
            for run_id in list(self.running):  # _shutdown may already be waiting out the grace
                self._stop_run(run_id, "shutdown")
        else:
            log.info("stopping: no new claims; waiting up to %gs for %d running attempt(s)",
                     self.shutdown_grace, len(self.running))
        self.stop()

    # -- the loop -----------------------------------------------------------------------------
    async def _flush_periodically(self, interval: float = 0.5) -> None:
        """Persist metadata and log lines of running attempts at least every `interval`."""
        while True:
            await asyncio.sleep(interval)
            for execution in list(self.running.values()):
                scope = execution.scope
                if scope is None or scope.dead or execution.finishing:
                    continue
                try:
                    scope.flush_now()
                except LeaseLost:
                    scope.dead = True
                except RuntimeError:
                    pass  # a sync task changed its metadata meanwhile: next time

    async def _loop_until_stopped(self) -> None:
        flusher = asyncio.create_task(self._flush_periodically())
        # failure hooks left owed by crashed final attempts (worker/owed.py)
        owed = asyncio.create_task(OwedHooks(self.app, self.id, self.task_ids).run_forever())
        try:
            await self._claim_loop()
        finally:
            flusher.cancel()
            owed.cancel()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self.running) - len(self._heirs) - self._offered()
            if free > 0 and self._refill_coming():
                # that commit claims for the free places too, and the attempts it ends wake
                # this loop (`_execute`), also if it fails
                await self._wake.wait()
                continue
            delay = self.claim_delay() if free > 0 else 0.0
            if delay:
                # Busy: let runs triggered meanwhile gather, then claim them in one transaction.
                # An idle worker claims at once, so a lone run pays no added latency.
                await asyncio.sleep(delay)
                free = self.concurrency - len(self.running) - len(self._heirs) - self._offered()
            if free > 0 and self.app.storage.io_bound and not (self._news or self._backlog):
                free = 0  # nothing new since a claim found fewer runs than it asked for: a
                # run made since sends a message (and a lost one is found by the next poll)
            if free > 0:
                self._news = False  # (a message during the claim sets it again)
            try:
                claimed = await self._claim_async(free) if free > 0 else []
            except StorageUnavailable as exc:
                log.error("cannot claim runs: %s; trying again", exc)
                self._news = True
                await asyncio.sleep(self.poll_interval)
                continue
            if free <= 0 or len(claimed) < free:
                self._keep_offer()  # (with nothing to run: the next run triggered takes it)
                await self._idle(bool(claimed))

    def _start(self, claimed: ClaimedRun, holds_slot: bool,
               before: Execution | None = None) -> None:
        self.attempts_started += 1
        if self.metrics is not None:
            self.metrics.attempt_started(claimed.record, self.app.clock.now())
        self._last_start = began = time.monotonic()
        execution = Execution(claimed, holds_slot=holds_slot, began=began, before=before)
        self.running[claimed.record.id] = execution
        execution.task = asyncio.create_task(self._execute(execution))

    async def _idle(self, started: bool = False) -> None:
        if not self.due.cached() and (started or not self.app.storage.io_bound):
            await asyncio.sleep(0)  # let attempts just claimed start before querying anything
        if self._listener is not None:
            self._watch_listener()
        timeout, due = self.poll_interval, None
        if len(self.running) < self.concurrency:
            now = self.app.clock.now()
            due = await self.due.get(min(now, self._claim_now) if self.rated else now,
                                     bool(self.running))
            if due is not None and self._rate_follower:
                due += self.rate_defer
            if due is not None:
                timeout = max(0.0, min(timeout, due - now))
        if not await self._wake.wait(timeout):
            self._news = True  # the polling fallback
            self.due.forget()
            if due is not None and due <= self.app.clock.now():
                await self._promote_due()

    async def _promote_due(self) -> None:
        """A sleep or a delay this worker timed ends now: queue what is due (every worker's
        housekeeping does it within a second too; this makes a 2 s sleep end on time)."""
        storage = self.app.storage
        try:
            if storage.io_bound and self.running:
                await asyncio.to_thread(storage.promote_delayed, self.app.clock.now())
            else:
                storage.promote_delayed(self.app.clock.now())
        except StorageUnavailable as exc:
            log.error("cannot queue due runs: %s; trying again", exc)

    async def _execute(self, execution: Execution) -> None:
        record = execution.claimed.record
        try:
            await self.runner.run(self.app.tasks[record.task_id], execution)
        except Exception:
            log.exception("run %s: the worker failed to record its attempt", record.id)
        finally:
            self.leases.forget(execution.claimed.lease)
            # the next attempt of this run may already be running (claimed as this one ended)
            if self.running.get(record.id) is execution:
                del self.running[record.id]
            if not execution.final:
                self.due.forget()  # a retry or a wait may be due before the last answer
            self._trim_line()
            self._wake.set()

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Execute everything ready now (by the app's clock), then return the number of attempts.
        For tests and scripts; does not start heartbeats."""
        before = self.attempts_started
        self.line.enabled = False  # nothing would start runs left in line once this returns
        for _ in range(max_rounds):
            self.app.storage.promote_delayed(self.app.clock.now())
            self._claim(self.concurrency - len(self.running))
            if not self.running:
                break
            await asyncio.wait([e.task for e in self.running.values() if e.task],
                               return_when=asyncio.FIRST_COMPLETED)
        return self.attempts_started - before

    # -- shutdown -----------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        await self._withdraw_offer()
        await self._hand_back(self.line.clear(), "the worker shut down")
        if self._handing_back:
            await asyncio.wait(self._handing_back)
        pending = [e.task for e in self.running.values() if e.task is not None]
        if pending and self.shutdown_grace > 0:
            await asyncio.wait(pending, timeout=self.shutdown_grace)
        for run_id in list(self.running):
            self._stop_run(run_id, "shutdown")
        pending = [e.task for e in self.running.values() if e.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    def _close(self) -> None:
        self._wake.close()
        if self.runner.isolation is not None:
            self.runner.isolation.close()
        if self._stall_watch is not None:
            self._stall_watch.stop()
        if self.metrics is not None:
            self.metrics.forget_worker(self)
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self._housekeeper is not None:
            self._housekeeper.stop()
        if self._listener is not None and self._loop is not None:
            if self._listening is not None:
                self._loop.remove_reader(self._listening[0])
            self._listener.close()
        self.app.storage.stop_worker(self.id, self.app.clock.now())
        log.info("worker %s stopped: %d attempt(s) started, %d from runs held in line",
                 self.id, self.attempts_started, self.line.started)
