"""Flow control in the claim with real worker processes (issue 22): a queue's rate limit holds
across three workers by the tasks' own clocks, held-back runs count no attempt, a rate limit per
key holds per key while another key goes on, total_concurrency caps all keys together, and a
tenant with a long backlog does not make another tenant's runs wait behind it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import WorkerProcess, Workers, wait_for_lines, wait_for_status

from tether import BatchItem, RunStatus, Tether

pytestmark = pytest.mark.slow


def most_in_window(times: list[float], width: float) -> int:
    """The largest number of `times` in any half-open window [t, t + width)."""
    ordered = sorted(times)
    best, low = 0, 0
    for high, at in enumerate(ordered):
        while ordered[low] <= at - width:
            low += 1
        best = max(best, high - low + 1)
    return best


def test_most_in_window_helper() -> None:
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert most_in_window([0.0, 1.0, 2.0], 1.0) == 1
    assert most_in_window([], 1.0) == 0


def _lines(path: Path, count: int, workers: Workers, timeout: float = 30) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            wait_for_lines(path, count, timeout=timeout, context=workers.describe)]


def _start(start_worker: Callable[..., WorkerProcess], workers: Workers, app: Path, count: int,
           *args: str) -> None:
    for _ in range(count):
        start_worker(app, *args, ready=False)
    for worker in workers.started:
        worker.wait_ready()


def test_rate_limit_holds_across_three_workers(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("rates_app.py")
    # one run at a time per worker, 0.12 s each: no worker keeps up with 20/s on its own, so
    # the three share the bucket
    _start(start_worker, workers, app, 3, "--concurrency", "1")
    runs = 50
    handles = client.batch_trigger("rated", [BatchItem({"n": n, "seconds": 0.12})
                                             for n in range(runs)])
    starts = _lines(tmp_path / "starts.log", runs, workers)
    times = [s["at"] for s in starts]
    # RateLimit(20, "1s"), burst 1: never more than limit + burst = 21 starts in any second,
    # by the tasks' own clocks
    assert most_in_window(times, 1.0) <= 21, sorted(times)
    # ... and the limit is what paces them: 50 runs take about 49 / 20 s, not much more
    assert 2.2 <= max(times) - min(times) <= 6.0, sorted(times)
    assert len({s["pid"] for s in starts}) == 3  # the workers shared the bucket
    stored = []
    for handle in handles:
        run = wait_for_status(client, handle.id, RunStatus.COMPLETED, context=workers.describe)
        assert run.attempts == 1  # held back again and again: no attempt counted
        stored.append(run.started_at.timestamp() if run.started_at else 0.0)
    assert most_in_window(stored, 1.0) <= 21  # the claims' own times


def test_rate_limit_per_key_holds_while_another_key_goes_on(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("rates_app.py")
    _start(start_worker, workers, app, 2, "--concurrency", "5")
    # RateLimit(2, "1s") per concurrency key: one run of a key every 0.5 s
    a = client.batch_trigger("keyed", [BatchItem({"n": n, "key": "a"}, concurrency_key="a")
                                       for n in range(5)])
    b = client.batch_trigger("keyed", [BatchItem({"n": n, "key": "b"}, concurrency_key="b")
                                       for n in range(2)])
    _lines(tmp_path / "starts.log", 7, workers)
    started: dict[str, list[float]] = {"a": [], "b": []}
    for key, handles in (("a", a), ("b", b)):
        for handle in handles:
            run = wait_for_status(client, handle.id, RunStatus.COMPLETED,
                                  context=workers.describe)
            assert run.attempts == 1 and run.started_at is not None
            started[key].append(run.started_at.timestamp())
    for times in started.values():
        # stored starts (the claims' own times): limit + burst = 3 in any second, and a's five
        # runs paced over their slots 0.5 s apart (the last no earlier than 2 s after the first,
        # less how late the first claim came after its slot)
        assert most_in_window(times, 1.0) <= 3, sorted(times)
    assert max(started["a"]) - min(started["a"]) >= 1.5, sorted(started["a"])
    # key b did not wait for key a's backlog: both its runs started before a's third
    assert max(started["b"]) < sorted(started["a"])[2], started


def test_total_concurrency_caps_all_keys_together(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("rates_app.py")
    _start(start_worker, workers, app, 2, "--concurrency", "5")
    items = [BatchItem({"n": n, "key": key, "seconds": 0.3}, concurrency_key=key)
             for n, key in enumerate("aaabbbccc")]
    client.batch_trigger("capped", items)
    starts = {s["n"]: s for s in _lines(tmp_path / "starts.log", len(items), workers)}
    ends = {s["n"]: s for s in _lines(tmp_path / "ends.log", len(items), workers)}
    spans = [(starts[n]["at"], ends[n]["at"], starts[n]["key"]) for n in starts]

    def overlap(chosen: list[tuple[float, float, str]]) -> int:
        events = sorted([(s, 1) for s, _, _ in chosen] + [(e, -1) for _, e, _ in chosen])
        current = peak = 0
        for _, delta in events:
            current += delta
            peak = max(peak, current)
        return peak

    assert overlap(spans) == 3, spans  # total_concurrency=3, and it was reached
    for key in "abc":
        assert overlap([s for s in spans if s[2] == key]) <= 2, spans  # concurrency=2 per key


def test_a_long_backlog_of_one_tenant_does_not_delay_another(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """One worker with 10 places, a queue with 10 per key: tenant a queues 1,000 runs of 20 ms
    (2 s of work), then tenant b 10 runs. In claim order b would wait about 2 s; taking turns,
    each of b's runs starts within a few runs' time."""
    app = app_file("rates_app.py")
    _start(start_worker, workers, app, 1, "--concurrency", "10")
    client.batch_trigger("fair", [BatchItem({"n": n, "key": "a", "seconds": 0.02},
                                            concurrency_key="a") for n in range(1000)])
    _lines(tmp_path / "starts.log", 50, workers)  # a's backlog is being worked through
    triggered: dict[int, float] = {}
    for n in range(10):
        triggered[1000 + n] = time.time()
        client.trigger("fair", {"n": 1000 + n, "key": "b", "seconds": 0.02}, concurrency_key="b")
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    waits: list[float] = []
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in (tmp_path / "starts.log").read_text().splitlines()]
        b = [s for s in lines if s["key"] == "b"]
        if len(b) == 10:
            waits = [s["at"] - triggered[s["n"]] for s in b]
            a_done = sum(1 for s in lines if s["key"] == "a")
            break
        time.sleep(0.05)
    assert len(waits) == 10, workers.describe()
    assert a_done < 1000, "a's backlog ended before b's runs started: the test proves nothing"
    assert max(waits) < 0.5, sorted(waits)
