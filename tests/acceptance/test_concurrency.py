"""Queue concurrency limits hold across worker processes, and per concurrency key."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    wait_for_lines,
    wait_for_status,
    wait_until,
)

from tether import BatchItem, RunStatus, Tether

pytestmark = pytest.mark.slow

RUNS = 12


def max_overlap(spans: list[dict[str, Any]]) -> int:
    """The largest number of spans open at one moment (a span ending when another starts does not
    overlap it)."""
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_max_overlap_helper() -> None:
    spans: list[dict[str, Any]] = [{"start": 0, "end": 2}, {"start": 1, "end": 3}, {"start": 2, "end": 4},
             {"start": 2.5, "end": 5}]
    assert max_overlap(spans) == 3
    assert max_overlap([{"start": 0, "end": 1}, {"start": 1, "end": 2}]) == 1


def run_all(client: Tether, workers: Workers, tmp_path: Path,
            items: list[BatchItem]) -> list[dict[str, Any]]:
    handles = client.batch_trigger("limited", items)
    spans = [json.loads(line) for line in
             wait_for_lines(tmp_path / "spans.log", len(items), timeout=30, context=workers.describe)]
    for handle in handles:
        run = wait_for_status(client, handle.id, RunStatus.COMPLETED, context=workers.describe)
        assert run.attempts == 1
    assert sorted(s["n"] for s in spans) == list(range(len(items)))
    return spans


def test_queue_limit_holds_across_three_worker_processes(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("limited_app.py")
    # One run per process at a time: any overlap is between processes, and three processes could
    # run three at once if the queue's limit were not enforced across them.
    for _ in range(3):
        start_worker(app, "--concurrency", "1", ready=False)
    for worker in workers.started:
        worker.wait_ready()

    spans = run_all(client, workers, tmp_path, [BatchItem({"n": n}) for n in range(RUNS)])

    assert max_overlap(spans) == 2, spans
    assert len({s["pid"] for s in spans}) >= 2, spans


def test_queue_limit_applies_per_concurrency_key(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("limited_app.py")
    for _ in range(3):
        start_worker(app, "--concurrency", "2", ready=False)
    for worker in workers.started:
        worker.wait_ready()

    items = [BatchItem({"n": n, "key": key}, concurrency_key=key)
             for n, key in enumerate(["customer-a", "customer-b"] * (RUNS // 2))]
    spans = run_all(client, workers, tmp_path, items)

    for key in ("customer-a", "customer-b"):
        of_key = [s for s in spans if s["key"] == key]
        assert len(of_key) == RUNS // 2
        assert max_overlap(of_key) <= 2, (key, of_key)
    # Keys are independent: more runs of the queue than its limit executed at one moment.
    assert max_overlap(spans) > 2, spans


def _handovers(workers: Workers) -> int:
    """Runs the workers started from the line they held (from the line each logs as it stops)."""
    total = 0
    for worker in workers.started:
        worker.send(signal.SIGTERM)
        worker.wait_exit()
        found = re.search(r"stopped: \d+ attempt\(s\) started, (\d+) from runs held in line",
                          worker.log())
        assert found, worker.describe()
        total += int(found.group(1))
    return total


@pytest.mark.parametrize("keys", [[None], ["customer-a", "customer-b"]])
def test_short_runs_started_from_the_line_keep_the_limit(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, keys: list[str | None],
) -> None:
    """Runs this short are held in line by the worker whose runs hold the slots: each starts
    as one ends, the slot handed over in the commit that follows. The limit holds
    for the tasks' own intervals, per key."""
    app = app_file("limited_app.py")
    for _ in range(3):
        start_worker(app, "--concurrency", "3", ready=False)
    for worker in workers.started:
        worker.wait_ready()
    runs = 60
    items = [BatchItem({"n": n, "key": keys[n % len(keys)], "seconds": 0.02},
                       concurrency_key=keys[n % len(keys)]) for n in range(runs)]
    spans = run_all(client, workers, tmp_path, items)
    for key in keys:
        of_key = [s for s in spans if s["key"] == key]
        assert max_overlap(of_key) <= 2, (key, of_key)
        # the stored times say the same: no more runs of a key executing at once than the limit
        stored = [{"start": r.started_at, "end": r.finished_at}
                  for r in client.runs.list(task="limited", limit=runs)
                  if r.payload["key"] == key]
        assert len(stored) == runs // len(keys)
        assert max_overlap(stored) <= 2, (key, stored)
    assert _handovers(workers) > 0


def test_a_worker_killed_while_holding_runs_in_line_loses_none(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """SIGKILL a worker while it holds both slots and runs in line (more runs of the queue
    EXECUTING than its limit): another worker takes every one of them over, each run
    completes, and the limit held for every execution recorded."""
    app = app_file("limited_app.py")
    first = start_worker(app, "--concurrency", "2")
    runs = 40
    handles = client.batch_trigger("limited", [BatchItem({"n": n, "seconds": 0.05})
                                               for n in range(runs)])
    spans_log = tmp_path / "spans.log"

    def holding_runs_in_line() -> bool:
        if len(read_lines(spans_log)) < 4:
            return False
        executing = client.runs.list(status="executing", task="limited", limit=100)
        return len(executing) > 2

    wait_until(holding_runs_in_line, 20, workers.describe)
    first.kill()
    start_worker(app, "--concurrency", "2")
    finished = [wait_for_status(client, h.id, RunStatus.COMPLETED, timeout=30,
                                context=workers.describe) for h in handles]
    assert all(run.attempts <= 2 for run in finished)
    # the slot holders and the runs in line: their attempts crashed
    assert sum(run.attempts == 2 for run in finished) >= 3, finished
    spans = [json.loads(line) for line in read_lines(spans_log)]
    assert {s["n"] for s in spans} == set(range(runs))
    assert max_overlap(spans) <= 2, spans


def test_a_worker_stopping_hands_its_runs_in_line_back(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """SIGTERM: the running attempts finish, and the runs held in line go back to the queue
    without an attempt counted, saying why."""
    app = app_file("limited_app.py")
    worker = start_worker(app, "--concurrency", "2")
    handles = client.batch_trigger("limited", [BatchItem({"n": n, "seconds": 0.05})
                                               for n in range(40)])

    def holding_runs_in_line() -> bool:
        return len(client.runs.list(status="executing", task="limited", limit=100)) > 2

    wait_until(holding_runs_in_line, 20, workers.describe)
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0, worker.describe()
    runs = [client.runs.retrieve(h.id) for h in handles]
    assert not [r for r in runs if r.status == RunStatus.EXECUTING]
    assert {r.status for r in runs} <= {RunStatus.COMPLETED, RunStatus.QUEUED}
    released = [r for r in runs if r.status == RunStatus.QUEUED and any(
        e.kind == "status" and "held in line" in e.data.get("reason", "")
        for e in client.runs.trace(r.id))]
    assert released and all(r.attempts == 0 for r in released), runs


def test_an_heir_started_early_whose_slot_is_not_handed_over_goes_back_to_the_queue(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """A run that ends is canceled before the worker commits its end: the run from the line
    that started as it ended never gets its slot (the cancel freed it). It stops, goes back to
    the queue without an attempt counted, saying why, and runs later; the limit held."""
    app = app_file("handover_app.py")
    start_worker(app, "--concurrency", "2")
    runs, canceled = 30, 12
    handles = client.batch_trigger("short", [BatchItem({"n": n, "cancel_self": n == canceled})
                                             for n in range(runs)])
    finished = [wait_for_status(client, h.id, RunStatus.COMPLETED if n != canceled else
                                RunStatus.CANCELED, timeout=30, context=workers.describe)
                for n, h in enumerate(handles)]
    refused = [r for r in finished if any(
        e.kind == "status" and "hand it that slot did not" in e.data.get("reason", "")
        for e in client.runs.trace(r.id))]
    assert len(refused) == 1, workers.describe()
    assert all(r.attempts == 1 for r in finished), finished
    spans = [json.loads(line) for line in read_lines(tmp_path / "spans.log")]
    assert max_overlap(spans) == 1, spans
    stored = [{"start": r.started_at, "end": r.finished_at} for r in finished
              if r.status == RunStatus.COMPLETED]
    assert max_overlap(stored) == 1, stored
    assert "the slot was not handed over to it" in workers.started[0].log()
