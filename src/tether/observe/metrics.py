"""This process's metrics: counters and histograms that the worker and the triggering paths
update, and what is read when they are collected (queue depths from the database, the workers'
busy slots and stalls), in Prometheus' text format and, when a MeterProvider is set, through
OpenTelemetry (observe/otel_metrics.py).

Off, they cost nothing: `active()` is None until something turns them on (`enable()`: a worker
with a metrics port, `tether serve`, or `enable_if_otel()` finding a MeterProvider), and the
hot paths check it once per attempt (nothing per step: step durations are read from the
attempt's step rows when it ends)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

from tether.errors import ConfigurationError
from tether.storage.base import Storage
from tether.storage.queue_records import QueueDepth
from tether.storage.records import RunRecord, StepRecord

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

log = logging.getLogger("tether.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNFINISHED = ("QUEUED", "DELAYED", "EXECUTING", "WAITING")
FAILED = frozenset({"FAILED", "TIMED_OUT"})  # the run's ends counted by runs_failed
TIMED_KINDS = frozenset({"step", "once"})  # the durable calls whose durations are measured
# seconds, from a quick step to a long attempt
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0, 900.0, 3600.0)


class HasStorage(Protocol):
    """What the metrics read queue depths through (a Tether app: its storage opens on use)."""

    @property
    def database_url(self) -> str: ...

    @property
    def storage(self) -> Storage: ...


class WorkerView(Protocol):
    """What the metrics read from a worker when they are collected."""

    concurrency: int
    running: dict[str, Any]


class Metrics:
    """The instruments of this process (one per process: see `enable`)."""

    def __init__(self) -> None:
        # (imported here: `import tether` stays light while metrics are off)
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_triggered = Counter(
            "tether_runs_triggered", "Runs created by triggers made in this process.", ["task"],
            registry=r)
        self.runs_completed = Counter(
            "tether_runs_completed", "Runs this process's workers completed.", ["task"],
            registry=r)
        self.runs_failed = Counter(
            "tether_runs_failed", "Runs this process's workers ended FAILED or TIMED_OUT "
            "(attempts exhausted, aborted, or over max_duration).", ["task"], registry=r)
        self.attempt_duration = Histogram(
            "tether_attempt_duration_seconds", "From an attempt's start on a worker to its "
            "ending stored.", ["task"], buckets=BUCKETS, registry=r)
        self.step_duration = Histogram(
            "tether_step_duration_seconds", "Durations of the steps (ctx.step, ctx.once) that "
            "ran and stored a result.", ["task"], buckets=BUCKETS, registry=r)
        self.scheduling_delay = Histogram(
            "tether_scheduling_delay_seconds", "From when a run was ready (its available_at) "
            "to when an attempt started on a worker.", ["queue"], buckets=BUCKETS, registry=r)
        self.sleep_lateness = Histogram(
            "tether_sleep_lateness_seconds", "From a parked sleep's due time to the run "
            "starting again on a worker.", buckets=BUCKETS, registry=r)
        self.workers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.apps: dict[str, list[weakref.ref[Any]]] = {}  # per database: apps to read it by
        self.depth_failed = False  # the last read of queue depths failed (logged once)
        r.register(cast("Collector", StateCollector(self)))
        self.otel: Any = None  # OtelInstruments when a MeterProvider is set

    # -- what is counted ----------------------------------------------------------------------
    def triggered(self, task_id: str, count: int = 1) -> None:
        if count > 0:
            self.runs_triggered.labels(task_id).inc(count)
            if self.otel is not None:
                self.otel.triggered(task_id, count)

    def attempt_started(self, record: RunRecord, now: float) -> None:
        """A worker starts an attempt of `record`: how long the run had been ready, and for a
        run back from a parked sleep, how late it resumes."""
        delay = max(0.0, now - record.available_at)
        self.scheduling_delay.labels(record.queue).observe(delay)
        sleep = record.waiting_for == "sleep"
        if sleep:
            self.sleep_lateness.observe(delay)
        if self.otel is not None:
            self.otel.started(record.queue, delay, sleep)

    def attempt_ended(self, task_id: str, seconds: float, status: str | None,
                      steps: Iterable[StepRecord]) -> None:
        """An attempt's ending was stored; `status` is the run's (None: not stored: the lease
        was lost); `steps` are the rows this attempt wrote."""
        self.attempt_duration.labels(task_id).observe(seconds)
        durations = [s.finished_at - s.started_at for s in steps
                     if s.kind in TIMED_KINDS and s.finished_at is not None]
        if durations:
            histogram = self.step_duration.labels(task_id)
            for d in durations:
                histogram.observe(max(0.0, d))
        ended = "completed" if status == "COMPLETED" else "failed" if status in FAILED else None
        if ended == "completed":
            self.runs_completed.labels(task_id).inc()
        elif ended == "failed":
            self.runs_failed.labels(task_id).inc()
        if self.otel is not None:
            self.otel.ended(task_id, seconds, durations, ended)

    # -- what is read when collected ----------------------------------------------------------
    def watch_worker(self, worker: WorkerView) -> None:
        self.workers.add(worker)

    def forget_worker(self, worker: WorkerView) -> None:
        self.workers.discard(worker)

    def watch_database(self, app: HasStorage) -> None:
        """Report the queue depths of `app`'s database (once per database, through the first
        of its apps still open)."""
        refs = self.apps.setdefault(app.database_url, [])
        refs[:] = [r for r in refs if r() is not None]
        if not any(r() is app for r in refs):
            refs.append(weakref.ref(app))

    def forget_database(self, app: HasStorage) -> None:
        """`app` closed its storage: read no more through it (that would open it again)."""
        refs = self.apps.get(app.database_url, [])
        refs[:] = [r for r in refs if r() is not None and r() is not app]

    def queue_depths(self) -> list[QueueDepth]:
        """Every watched database's depths; [] for one that cannot be read now (logged once
        until it can again: a scrape still answers, with the rest)."""
        depths: list[QueueDepth] = []
        for refs in list(self.apps.values()):
            app = next((a for a in (r() for r in list(refs)) if a is not None), None)
            if app is None:
                continue
            try:
                depths.extend(app.storage.queue_depths())
            except Exception as exc:
                if not self.depth_failed:
                    log.warning("metrics: cannot read queue depths: %s", exc)
                self.depth_failed = True
                continue
            self.depth_failed = False
        return depths

    def slots(self) -> tuple[int, int]:
        """(busy, total) over this process's workers."""
        workers = list(self.workers)
        return (sum(len(w.running) for w in workers), sum(w.concurrency for w in workers))

    def stalls(self) -> int:
        return sum(int(getattr(w, "stalls", 0)) for w in list(self.workers))

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every instrument."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class StateCollector:
    """The instruments read when collected, not counted as things happen (a prometheus_client
    Collector)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m, now = self.metrics, time.time()
        depth = GaugeMetricFamily("tether_queue_depth", "Unfinished runs per queue and status, "
                                  "read from the database.", labels=["queue", "status"])
        oldest = GaugeMetricFamily("tether_queue_oldest_ready_seconds", "Age of the oldest "
                                   "QUEUED run whose time has come, per queue (0: none).",
                                   labels=["queue"])
        for d in m.queue_depths():
            depth.add_metric([d.queue, d.status], d.count)
            if d.oldest is not None:
                oldest.add_metric([d.queue], max(0.0, now - d.oldest))
        busy, total = m.slots()
        yield depth
        yield oldest
        yield GaugeMetricFamily("tether_worker_slots_busy", "Attempts this process's workers "
                                "are running now.", value=busy)
        yield GaugeMetricFamily("tether_worker_slots", "How many attempts this process's "
                                "workers may run at once (their concurrency).", value=total)
        yield CounterMetricFamily("tether_worker_stalls", "Stalls this process's workers "
                                  "detected (an event loop blocked too long).", value=m.stalls())


class MetricsServer:
    """A worker's /metrics endpoint: prometheus_client's HTTP server on a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        try:
            self.httpd, self.thread = start_http_server(port, host, metrics.registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {reason} (choose "
                                     "another --metrics-port)") from None
        self.host, self.port = host, int(self.httpd.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- one instance per process -----------------------------------------------------------------
_lock = threading.Lock()
_metrics: Metrics | None = None


def active() -> Metrics | None:
    """This process's metrics if they are on, else None (the hot paths' one check)."""
    return _metrics


def count_triggered(created: Iterable[tuple[RunRecord, bool]]) -> None:
    """Count the runs a trigger made (the pairs storage returns: a run and whether it is new),
    per task, if metrics are on."""
    metrics = _metrics
    if metrics is None:
        return
    counts: dict[str, int] = {}
    for record, is_new in created:
        if is_new:
            counts[record.task_id] = counts.get(record.task_id, 0) + 1
    for task_id, n in counts.items():
        metrics.triggered(task_id, n)


def enable() -> Metrics:
    """Turn this process's metrics on (idempotent); with a MeterProvider set, they are reported
    through OpenTelemetry too."""
    global _metrics
    with _lock:
        if _metrics is None:
            metrics = Metrics()
            from tether.observe.otel_metrics import instruments

            metrics.otel = instruments(metrics)
            _metrics = metrics
        return _metrics


def enable_if_otel() -> Metrics | None:
    """Turn the metrics on when OpenTelemetry is installed and a MeterProvider was set (the
    app's, or from OTEL_* settings), else leave them as they are. Metrics already on start
    reporting through it too if they did not yet."""
    from tether.observe.otel_metrics import instruments, provider_set

    metrics = _metrics
    if not provider_set():
        return metrics
    if metrics is None:
        return enable()
    with _lock:
        if metrics.otel is None:
            metrics.otel = instruments(metrics)
    return metrics
