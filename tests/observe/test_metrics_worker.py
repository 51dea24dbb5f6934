"""A real `tether worker --metrics-port` process on each backend: its /metrics parses with
prometheus_client's parser, and its counters and histograms move by exactly what the runs it
executes do; the queue depth it reads from the database; a port in use is one clear line."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from metrics_support import OtlpReceiver, Samples, free_port, parse, scrape, value

from tether import Queue, RunStatus, Tether

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TETHER_EXE = Path(sys.executable).with_name("tether")
FINAL = {RunStatus.COMPLETED, RunStatus.FAILED}


def _env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TETHER_", "OTEL_"))}
    env.update(TETHER_DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    return env


class Worker:
    def __init__(self, tmp_path: Path, db_url: str, *args: str) -> None:
        app = tmp_path / "metrics_app.py"
        shutil.copyfile(HERE / "metrics_app.py", app)
        self.log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([str(TETHER_EXE), "worker", str(app), *args],
                                         cwd=tmp_path, env=_env(db_url), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker never logged {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def start(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start_worker(*args: str) -> Worker:
        worker = Worker(tmp_path, db_url, *args)
        started.append(worker)
        return worker

    yield start_worker
    for worker in started:
        worker.close()


@pytest.fixture
def client(db_url: str) -> Iterator[Tether]:
    app = Tether(db_url)
    yield app
    app.close()


def _settled(client: Tether, run_ids: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = [client.runs.retrieve(r).status for r in run_ids]
        if all(s in FINAL for s in statuses):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"runs did not end: {statuses}")
        time.sleep(0.05)


def _until(url: str, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape until `check` holds (a worker records an attempt just after its commit)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_worker_metrics_move_with_the_runs_it_executes(start: Callable[..., Worker],
                                                       client: Tether) -> None:
    port = free_port()
    worker = start("--metrics-port", str(port), "--concurrency", "4")
    worker.wait_log("serving")
    assert f"metrics at http://127.0.0.1:{port}/metrics" in worker.log()
    url = f"http://127.0.0.1:{port}/metrics"
    before = scrape(url)
    assert value(before, "tether_worker_slots") == 4
    assert value(before, "tether_worker_slots_busy") == 0
    assert value(before, "tether_worker_stalls_total") == 0

    late = client.trigger("later", None, delay="1h")
    runs = [client.trigger("two-steps", {"n": i}).id for i in range(3)]
    runs += [client.trigger("always-fails", i).id for i in range(2)]
    runs.append(client.trigger("naps").id)
    _settled(client, runs)

    def recorded(s: Samples) -> bool:
        return value(s, "tether_attempt_duration_seconds_count", task="naps") == 2 and \
            value(s, "tether_runs_failed_total", task="always-fails") == 2 and \
            value(s, "tether_runs_completed_total", task="two-steps") == 3

    after = _until(url, recorded)
    assert value(after, "tether_runs_completed_total", task="two-steps") == 3
    assert value(after, "tether_runs_completed_total", task="naps") == 1
    assert value(after, "tether_runs_completed_total", task="always-fails") == 0
    assert value(after, "tether_runs_failed_total", task="always-fails") == 2
    assert value(after, "tether_runs_failed_total", task="two-steps") == 0
    # every attempt: 3 + 2 x 2 + 2 (the nap parks, then resumes on an attempt of its own here)
    for task, attempts in (("two-steps", 3), ("always-fails", 4), ("naps", 2)):
        assert value(after, "tether_attempt_duration_seconds_count", task=task) == attempts
    assert value(after, "tether_step_duration_seconds_count", task="two-steps") == 6
    assert value(after, "tether_step_duration_seconds_count", task="naps") == 0
    assert value(after, "tether_scheduling_delay_seconds_count", queue="metrics-q") == 9
    assert value(after, "tether_sleep_lateness_seconds_count") == 1
    lateness = value(after, "tether_sleep_lateness_seconds_sum")
    assert 0 <= lateness < 5
    # triggers made in the test's process are not this worker's
    assert value(after, "tether_runs_triggered_total", task="two-steps") == 0
    # read from the database: only the delayed run is unfinished
    assert value(after, "tether_queue_depth", queue="metrics-later", status="DELAYED") == 1
    assert value(after, "tether_queue_depth", queue="metrics-q", status="QUEUED") == 0
    assert client.runs.retrieve(late.id).status == RunStatus.DELAYED
    assert value(after, "tether_worker_slots_busy") == 0


def test_busy_slots_are_the_attempts_running_now(start: Callable[..., Worker], client: Tether,
                                                tmp_path: Path) -> None:
    port = free_port()
    worker = start("--metrics-port", str(port), "--concurrency", "3")
    worker.wait_log("serving")
    url = f"http://127.0.0.1:{port}/metrics"
    runs = [client.trigger("holds").id for _ in range(2)]
    held = _until(url, lambda s: value(s, "tether_worker_slots_busy") == 2)
    assert value(held, "tether_worker_slots_busy") == 2, worker.log()
    assert value(held, "tether_worker_slots") == 3
    assert value(held, "tether_queue_depth", queue="metrics-hold", status="EXECUTING") == 2
    (tmp_path / "release").touch()
    _settled(client, runs)
    after = _until(url, lambda s: value(s, "tether_worker_slots_busy") == 0)
    assert value(after, "tether_worker_slots_busy") == 0
    assert value(after, "tether_runs_completed_total", task="holds") == 2


def test_queue_depth_and_oldest_ready_run_without_a_worker_for_them(
        start: Callable[..., Worker], client: Tether) -> None:
    """Runs of a queue the worker does not serve stay QUEUED: the depth and the oldest ready
    run's age come from the database."""
    port = free_port()
    worker = start("--metrics-port", str(port), "--queue", "metrics-later")
    worker.wait_log("serving")
    url = f"http://127.0.0.1:{port}/metrics"
    # (that worker registers only the tasks it serves: this process knows this one's queue)
    waiting = client.task(id="unserved", queue=Queue("metrics-q"))(lambda payload: None)
    for i in range(3):
        waiting.trigger(i)
    time.sleep(0.3)
    samples = scrape(url)
    assert value(samples, "tether_queue_depth", queue="metrics-q", status="QUEUED") == 3
    age = value(samples, "tether_queue_oldest_ready_seconds", queue="metrics-q")
    assert 0.2 < age < 30


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the IPv4 and IPv6 sockets listening on `port` (Linux /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_the_worker_endpoint_listens_on_loopback_only(start: Callable[..., Worker]) -> None:
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("reads the listening sockets from Linux's /proc/net/tcp")
    port = free_port()
    start("--metrics-port", str(port)).wait_log("serving")
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 (00000000)


def test_a_metrics_port_in_use_is_one_clear_error(start: Callable[..., Worker]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        worker = start("--metrics-port", str(port))
        assert worker.proc.wait(30) != 0
    log = worker.log()
    assert "Traceback" not in log, log
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use" in log, log


def test_parse_refuses_what_is_not_the_text_format() -> None:
    """The helper the tests above rely on fails on text that is not an exposition."""
    with pytest.raises(ValueError):
        parse("tether_queue_depth{queue=\"q\" 1\n")


def test_a_worker_exports_metrics_over_otlp_from_the_otel_settings(
        tmp_path: Path, db_url: str, client: Tether) -> None:
    """`tether worker` with OTEL_METRICS_EXPORTER=otlp and no provider of the app's: it sets
    the SDK's, which sends the same counters to an OTLP/HTTP receiver."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    receiver = OtlpReceiver()
    env = {**_env(db_url), "OTEL_METRICS_EXPORTER": "otlp",
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": receiver.url,
           "OTEL_METRIC_EXPORT_INTERVAL": "200", "OTEL_SERVICE_NAME": "metrics-test"}
    app = tmp_path / "metrics_app.py"
    shutil.copyfile(HERE / "metrics_app.py", app)
    log_path = tmp_path / "otlp-worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(TETHER_EXE), "worker", str(app)], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while "serving" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("worker did not start:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.02)
        runs = [client.trigger("two-steps", {"n": i}).id for i in range(2)]
        runs.append(client.trigger("always-fails", 0).id)
        _settled(client, runs)
        deadline = time.monotonic() + 15
        while (receiver.sums("tether_runs_completed", task="two-steps")[-1:] != [2.0]
               or receiver.sums("tether_runs_failed", task="always-fails")[-1:] != [1.0]):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"received {len(receiver.received)} export(s); worker log:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        assert receiver.service_names() == {"metrics-test"}
    finally:
        proc.kill()
        proc.wait(10)
        receiver.close()
