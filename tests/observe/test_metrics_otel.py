"""The same instruments through OpenTelemetry: with an SDK MeterProvider set (read by its
in-memory reader), a worker turns the metrics on by itself and its runs move the OTel counters
and histograms; the observable gauges read the queue depths from the database. Without a
provider and without a metrics port nothing is on, and `import tether` leaves
prometheus_client unimported."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import _internal as otel_globals
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.util._once import Once

from tether import Queue, Tether
from tether.observe import metrics as tether_metrics
from tether.worker.worker import Worker


def _reset() -> None:
    """OpenTelemetry sets a process's provider once (its own tests reset these globals), and
    Tether's metrics are one per process: both start over for each test here."""
    otel_globals._METER_PROVIDER = None
    otel_globals._METER_PROVIDER_SET_ONCE = Once()
    tether_metrics._metrics = None


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    saved = tether_metrics._metrics
    _reset()
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    otel_globals.set_meter_provider(provider)
    yield memory
    provider.shutdown()
    _reset()
    tether_metrics._metrics = saved


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _by(points: list[Any], **labels: str) -> Any:
    [point] = [p for p in points if dict(p.attributes) == labels]
    return point


def test_otel_instruments_move_with_a_workers_runs(db_url: str,
                                                   reader: InMemoryMetricReader) -> None:
    app = Tether(db_url)
    try:
        calls = {"n": 0}

        @app.task(id="otel-ok", queue=Queue("otel-q"))
        async def ok(payload: int, ctx: Any) -> int:
            return int(await ctx.step("double", lambda: payload * 2))

        @app.task(id="otel-fails", queue=Queue("otel-q"))
        def fails(payload: int) -> None:
            calls["n"] += 1
            raise ValueError("no")

        fails.trigger(1, max_attempts=1)
        for i in range(3):
            ok.trigger(i)
        ok.trigger(9, delay="1h")  # stays DELAYED
        worker = Worker(app, concurrency=2)
        assert worker.metrics is not None and worker.metrics.otel is not None
        assert asyncio.run(worker.run_until_idle()) == 4

        points = _points(reader)
        assert _by(points["tether_runs_triggered"], task="otel-ok").value == 4
        assert _by(points["tether_runs_triggered"], task="otel-fails").value == 1
        assert _by(points["tether_runs_completed"], task="otel-ok").value == 3
        assert _by(points["tether_runs_failed"], task="otel-fails").value == 1
        assert "otel-fails" not in {p.attributes["task"] for p in points["tether_runs_completed"]}
        assert _by(points["tether_attempt_duration_seconds"], task="otel-ok").count == 3
        assert _by(points["tether_step_duration_seconds"], task="otel-ok").count == 3
        assert _by(points["tether_scheduling_delay_seconds"], queue="otel-q").count == 4
        assert _by(points["tether_queue_depth"], queue="otel-q", status="DELAYED").value == 1
        assert {dict(p.attributes)["status"] for p in points["tether_queue_depth"]} == {"DELAYED"}
        assert calls["n"] == 1
    finally:
        app.close()


def test_metrics_stay_off_without_a_port_or_a_provider(tmp_path: Any) -> None:
    """In a fresh process: importing tether and building a worker turns nothing on."""
    code = (
        "import sys\n"
        "from tether import Tether\n"
        "from tether.observe.metrics import active\n"
        "from tether.worker.worker import Worker\n"
        f"app = Tether('sqlite:///{tmp_path}/off.db')\n"
        "app.task(id='t')(lambda p: p)\n"
        "app.trigger('t', 1)\n"
        "worker = Worker(app)\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "assert active() is None and worker.metrics is None and worker.runner.metrics is None\n"
        "print('off')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "off", result.stderr
