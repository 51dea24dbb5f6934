"""`tether serve`'s GET /metrics over real HTTP on each backend: refused without a valid key,
the Prometheus text format with one; API triggers counted, queue depths read from the database;
and in `tether dev` shape (a worker in the server's process) the worker's instruments too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from metrics_support import api_server, scrape, value

from tether import Queue, Tether
from tether.worker.worker import Worker


@dataclass
class Served:
    url: str
    key: str
    app: Tether


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    app = Tether(db_url)
    app.storage.migrate()
    key = app.keys.create("metrics")
    assert key.secret is not None
    with api_server(app) as url:
        yield Served(url, key.secret, app)
    app.close()


def test_metrics_need_a_key(served: Served) -> None:
    url = served.url + "/metrics"
    bare = httpx.get(url, timeout=10)
    assert bare.status_code == 401, bare.text
    assert "error" in bare.json()
    wrong = httpx.get(url, headers={"Authorization": "Bearer tk_not_a_key"}, timeout=10)
    assert wrong.status_code == 401, wrong.text
    assert "tether_runs_triggered" not in wrong.text
    samples = scrape(url, served.key)
    assert ("tether_worker_slots", ()) in samples  # the format parsed, and holds the gauges


def test_api_triggers_and_queue_depths(served: Served) -> None:
    app = served.app
    task = app.task(id="metered", queue=Queue("metered-q"))(lambda payload: None)
    url = served.url + "/metrics"
    before = scrape(url, served.key)
    headers = {"Authorization": f"Bearer {served.key}"}
    for i in range(3):
        answer = httpx.post(f"{served.url}/api/v1/tasks/metered/trigger",
                            json={"payload": i}, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
    task.trigger(99, delay="1h")  # the Python API in this same process counts too
    after = scrape(url, served.key)
    moved = (value(after, "tether_runs_triggered_total", task="metered")
             - value(before, "tether_runs_triggered_total", task="metered"))
    assert moved == 4
    assert value(after, "tether_queue_depth", queue="metered-q", status="QUEUED") == 3
    assert value(after, "tether_queue_depth", queue="metered-q", status="DELAYED") == 1
    assert value(after, "tether_queue_oldest_ready_seconds", queue="metered-q") >= 0
    assert ("tether_queue_oldest_ready_seconds", (("queue", "metered-q"),)) in after


def test_a_worker_in_the_server_process_reports_there(served: Served) -> None:
    """As `tether dev` runs them: the worker's counters appear on the server's /metrics."""
    app = served.app
    task = app.task(id="in-process", queue=Queue("dev-q"))(lambda payload: payload * 2)
    url = served.url + "/metrics"
    before = scrape(url, served.key)
    handles = [task.trigger(i) for i in range(2)]
    worker = Worker(app, concurrency=2)
    assert worker.metrics is not None  # the server turned them on for the process
    assert asyncio.run(worker.run_until_idle()) == 2
    assert [h.result(timeout=10) for h in handles] == [0, 2]
    after = scrape(url, served.key)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tether_runs_completed_total", task="in-process") == 2
    assert moved("tether_attempt_duration_seconds_count", task="in-process") == 2
    assert moved("tether_scheduling_delay_seconds_count", queue="dev-q") == 2
    assert value(after, "tether_queue_depth", queue="dev-q", status="QUEUED") == 0
