"""The metrics through OpenTelemetry (the `otel` extra): the same instruments, by the same
names, on the global MeterProvider, which the app sets or `tether worker` / `serve` / `dev` set
from the standard OTEL_* settings (`configure_from_env`). Without OpenTelemetry installed,
nothing here is imported but `provider_set`, which then says False."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.observe.metrics import Metrics

log = logging.getLogger("tether.metrics")

UNSET = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})  # the API's stand-ins


def provider_set() -> bool:
    """Whether OpenTelemetry is installed and a MeterProvider was set. Setting one imports
    opentelemetry.metrics: a process that never did pays no import here."""
    otel = sys.modules.get("opentelemetry.metrics")
    if otel is None:
        return False
    return type(otel.get_meter_provider()).__name__ not in UNSET


def wanted_from_env() -> bool:
    """Whether the OTEL_* settings ask for metrics over OTLP: OTEL_METRICS_EXPORTER=otlp, or an
    OTLP endpoint with OTEL_METRICS_EXPORTER not "none"."""
    exporter = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if exporter:
        return "otlp" in {e.strip() for e in exporter.split(",")}
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_from_env(service: str) -> bool:
    """For `tether worker` / `serve` / `dev`: when the OTEL_* settings ask for metrics and no
    MeterProvider is set, set the SDK's, exporting over OTLP/HTTP (endpoint, headers and
    OTEL_METRIC_EXPORT_INTERVAL as the exporter reads them; service.name from
    OTEL_SERVICE_NAME, else `service`). True if one is set now (it flushes at exit)."""
    if provider_set():
        return True
    if not wanted_from_env():
        return False
    try:
        from opentelemetry import metrics as otel
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning("OTEL_* settings ask for metrics, but OpenTelemetry is not installed "
                    "(pip install 'tether[otel]'); metrics are not exported")
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    otel.set_meter_provider(MeterProvider(metric_readers=[reader],
                                          resource=Resource.create({"service.name": name})))
    return True


class OtelInstruments:
    """The OpenTelemetry side of `Metrics`: counters and histograms recorded alongside the
    Prometheus ones, and observable gauges that read the same sources when collected."""

    def __init__(self, metrics: Metrics) -> None:
        from opentelemetry import metrics as otel
        from opentelemetry.metrics import CallbackOptions, Observation

        self._observation = Observation
        meter = otel.get_meter("tether")
        self.runs_triggered = meter.create_counter(
            "tether_runs_triggered", "{run}", "Runs created by triggers made in this process.")
        self.runs_completed = meter.create_counter(
            "tether_runs_completed", "{run}", "Runs this process's workers completed.")
        self.runs_failed = meter.create_counter(
            "tether_runs_failed", "{run}", "Runs this process's workers ended FAILED or TIMED_OUT.")
        self.attempt_duration = meter.create_histogram(
            "tether_attempt_duration_seconds", "s", "From an attempt's start to its ending stored.")
        self.step_duration = meter.create_histogram(
            "tether_step_duration_seconds", "s", "Durations of the steps that ran.")
        self.scheduling_delay = meter.create_histogram(
            "tether_scheduling_delay_seconds", "s", "From a run ready to its attempt started.")
        self.sleep_lateness = meter.create_histogram(
            "tether_sleep_lateness_seconds", "s", "From a parked sleep's due time to its run "
            "starting again.")

        def depths(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(d.count, {"queue": d.queue, "status": d.status})
                    for d in metrics.queue_depths()]

        def oldest(_: CallbackOptions) -> Iterable[Observation]:
            now = time.time()
            return [Observation(max(0.0, now - d.oldest), {"queue": d.queue})
                    for d in metrics.queue_depths() if d.oldest is not None]

        def busy(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(metrics.slots()[0])]

        def stalls(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(metrics.stalls())]

        meter.create_observable_gauge("tether_queue_depth", [depths], "{run}",
                                      "Unfinished runs per queue and status.")
        meter.create_observable_gauge("tether_queue_oldest_ready_seconds", [oldest], "s",
                                      "Age of the oldest QUEUED run whose time has come.")
        meter.create_observable_gauge("tether_worker_slots_busy", [busy], "{attempt}",
                                      "Attempts this process's workers are running now.")
        meter.create_observable_counter("tether_worker_stalls", [stalls], "{stall}",
                                        "Stalls this process's workers detected.")

    def triggered(self, task_id: str, count: int) -> None:
        self.runs_triggered.add(count, {"task": task_id})

    def started(self, queue: str, delay: float, sleep: bool) -> None:
        self.scheduling_delay.record(delay, {"queue": queue})
        if sleep:
            self.sleep_lateness.record(delay)

    def ended(self, task_id: str, seconds: float, steps: list[float], ended: str | None) -> None:
        labels = {"task": task_id}
        self.attempt_duration.record(seconds, labels)
        for d in steps:
            self.step_duration.record(max(0.0, d), labels)
        if ended == "completed":
            self.runs_completed.add(1, labels)
        elif ended == "failed":
            self.runs_failed.add(1, labels)


def instruments(metrics: Metrics) -> Any:
    """OtelInstruments for `metrics` if a MeterProvider is set, else None."""
    return OtelInstruments(metrics) if provider_set() else None
