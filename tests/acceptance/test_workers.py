"""The workers registry with real `tether worker` processes: a task that blocks the event loop is
reported (one warning with its stack, the worker shown stalled, the stall counted in its
metrics) and the worker recovers; a SIGKILLed worker is shown gone; the same workers through
Python, the CLI and the HTTP API."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from acceptance_support import WorkerProcess, Workers, run_cli, wait_for_status, wait_until
from prometheus_client.parser import text_string_to_metric_families

from tether import RunStatus, Tether
from tether.server import create_app
from tether.server.app import ServerConfig
from tether.workers import WorkerInfo

pytestmark = pytest.mark.slow


def state_of(client: Tether, worker: WorkerProcess) -> WorkerInfo | None:
    found = [w for w in client.workers.list() if w.pid == worker.pid]
    return found[0] if found else None


def stalls_counted(worker: WorkerProcess) -> float:
    """tether_worker_stalls_total on the worker's /metrics (started with --metrics-port 0)."""
    url = re.search(r"metrics at (http://\S+/metrics)", worker.log())
    assert url is not None, worker.log()
    answer = httpx.get(url.group(1), timeout=10)
    assert answer.status_code == 200, answer.text
    found = [s.value for family in text_string_to_metric_families(answer.text)
             for s in family.samples if s.name == "tether_worker_stalls_total"]
    assert len(found) == 1, answer.text
    return found[0]


def test_a_task_that_blocks_the_event_loop_is_reported_and_the_worker_recovers(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    worker = start_worker(app_file("stall_app.py"), "--metrics-port", "0")
    live = wait_until(lambda: (w := state_of(client, worker)) and w.state == "live" and w, 10,
                      lambda: f"worker never listed live\n{workers.describe()}")
    assert live.stalls == 0 and live.stalled_since is None and live.concurrency == 10
    assert stalls_counted(worker) == 0

    blocked = client.trigger("blocks-the-loop", {"seconds": 3})
    began = time.time()
    stalled = wait_until(lambda: (w := state_of(client, worker)) and w.state == "stalled" and w,
                         3, lambda: f"worker never shown stalled\n{workers.describe()}")
    assert time.time() - began < 3  # seen during the block, not after it
    assert stalled.stalls == 1 and stalled.stalled_since is not None and stalled.running == 1
    worker.wait_log("WARNING tether.worker: the event loop has not answered", timeout=5)
    log = worker.log()
    warning = log[log.index("the event loop has not answered"):]
    # the stack names the blocking call in the task's own code
    assert 'stall_app.py", line' in warning and "in blocks_the_loop" in warning, log
    assert "time.sleep(payload[\"seconds\"])" in warning, log

    run = wait_for_status(client, blocked.id, RunStatus.COMPLETED, context=workers.describe)
    assert run.output == "woke"
    worker.wait_log("the event loop answers again after", timeout=5)
    recovered = wait_until(
        lambda: (w := state_of(client, worker)) and w.state == "live" and w, 5,
        lambda: f"worker never shown live again\n{workers.describe()}")
    assert recovered.stalled_since is None and recovered.stalls == 1
    assert recovered.last_claim_at is not None and recovered.last_claim_at.timestamp() >= began - 1

    started = time.monotonic()
    assert client.trigger("quick", None).result(timeout=10) == "ok"  # it works normally again
    assert time.monotonic() - started < 5
    time.sleep(1.5)  # a quiet loop: no new warning
    assert worker.log().count("the event loop has not answered") == 1, worker.log()
    assert state_of(client, worker).stalls == 1  # type: ignore[union-attr]
    assert stalls_counted(worker) == 1  # the metric counts the same stall, once

    # the same worker through the CLI and the HTTP API; a SIGKILLed one shows as gone
    killed = start_worker(app_file("stall_app.py"), "--stall-seconds", "0")
    killed.kill()
    table = run_cli("workers", "list", env=tether_env, cwd=tmp_path)
    assert table.returncode == 0, table
    rows = {line.split()[2].split(":")[1]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows[str(worker.pid)][1] == "live" and rows[str(worker.pid)][5] == "1", table.stdout
    assert rows[str(killed.pid)][1] == "gone", table.stdout
    listed = json.loads(run_cli("workers", "list", "--json", env=tether_env, cwd=tmp_path).stdout)
    mine = next(w for w in listed if w["pid"] == worker.pid)
    assert (mine["state"], mine["stalls"], mine["stalled_since"]) == ("live", 1, None)
    assert mine["tasks"] == ["blocks-the-loop", "quick"]

    key = client.keys.create("workers").secret

    async def read() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(client, ServerConfig()),
                                        client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return (await http.get("/api/v1/workers", headers={"Authorization": f"Bearer {key}"}),
                    await http.get("/api/v1/workers"))

    answer, anonymous = asyncio.run(read())
    assert anonymous.status_code == 401
    assert answer.status_code == 200, answer.text
    items = {w["pid"]: w for w in answer.json()["data"]}
    assert items[worker.pid]["state"] == "live" and items[worker.pid]["stalls"] == 1
    assert items[worker.pid]["stalledSince"] is None and items[worker.pid]["lastClaimAt"]
    assert items[killed.pid]["state"] == "gone"
    assert set(items[worker.pid]) == {
        "id", "hostname", "pid", "version", "queues", "concurrency", "tasks", "startedAt",
        "lastSeenAt", "stoppedAt", "running", "lastClaimAt", "stalledSince", "stalls", "state"}


def test_stall_seconds_is_checked(app_file: Callable[[str], Path], tmp_path: Path,
                                  tether_env: dict[str, str]) -> None:
    bad = run_cli("worker", str(app_file("stall_app.py")), "--stall-seconds", "-1",
                  env=tether_env, cwd=tmp_path)
    assert bad.returncode != 0 and "--stall-seconds" in bad.stderr, bad
    assert "Traceback" not in bad.stderr
