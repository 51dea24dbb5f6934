"""A worker frozen past its lease (SIGSTOP) while it holds runs in line, then resumed
(SIGCONT) after another worker finished everything: it starts no work it no longer holds."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status, wait_until

from tether import BatchItem, RunStatus, Tether
from tether.worker.line import DEPTH

pytestmark = pytest.mark.slow

HOLD = 20  # the run during whose tail the first worker is frozen


@contextmanager
def write_lock(db_url: str) -> Iterator[None]:
    """Hold the database's write lock: no worker commits anything meanwhile."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()
        return
    import psycopg

    base, _, schema = db_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        conn.execute(f'LOCK TABLE "{schema}".runs IN EXCLUSIVE MODE')
        yield


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path)]


def _stopped(pid: int) -> bool:
    """Whether every thread of process `pid` is stopped (SIGSTOP is delivered asynchronously)."""
    tasks = Path(f"/proc/{pid}/task")
    return all((t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
               for t in tasks.iterdir())


def _spans(events: list[dict[str, Any]]) -> list[tuple[float, float, int, int]]:
    """(start, end, n, pid) of every call of s1 that ended."""
    open_: dict[tuple[int, int], float] = {}
    spans = []
    for e in events:
        if e["event"] == "start":
            open_[(e["n"], e["pid"])] = e["at"]
        elif (e["n"], e["pid"]) in open_:
            spans.append((open_.pop((e["n"], e["pid"])), e["at"], e["n"], e["pid"]))
    return spans


def test_a_frozen_worker_starts_nothing_it_lost_when_resumed(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, db_url: str,
) -> None:
    app = app_file("frozen_app.py")
    steps_log = tmp_path / "steps.log"
    first = start_worker(app, "--concurrency", "2")
    runs = 40
    items = [BatchItem({"n": n, "tail": 3.0 if n == HOLD else 0.02}) for n in range(runs)]
    handles = client.batch_trigger("one-at-a-time", items)

    def in_the_tail_of_the_held_run() -> bool:
        return any(e["event"] == "end" and e["n"] == HOLD for e in _events(steps_log))

    wait_until(in_the_tail_of_the_held_run, 30, workers.describe)
    # the first worker holds the slot (run HOLD) and runs in line for it
    executing = client.runs.list(status="executing", task="one-at-a-time", limit=100)
    assert len(executing) == 1 + DEPTH, executing
    first.send(signal.SIGSTOP)
    stopped_at = time.time()
    start_worker(app, "--concurrency", "2")
    for handle in handles:
        wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=60, context=workers.describe)
    assert time.time() - stopped_at > 2.0  # past the frozen worker's lease
    with write_lock(db_url):
        resumed_at = time.time()
        first.send(signal.SIGCONT)
        time.sleep(1.0)  # the resumed worker's loop runs on while nothing can be committed
    time.sleep(1.5)  # its refused writes come back; it renews nothing

    events = _events(steps_log)
    started_late = [e for e in events if e["pid"] == first.pid and e["event"] == "start"
                    and e["at"] >= resumed_at]
    assert not started_late, (started_late, workers.describe())
    calls: dict[int, int] = {}
    for e in events:
        if e["event"] == "start":
            calls[e["n"]] = calls.get(e["n"], 0) + 1
    # every step ran once, except the one of the run the frozen worker was executing, which the
    # other worker took over (its result was stored, so at most the run's tail ran twice)
    assert all(count == 1 for count in calls.values()), [e for e in events if calls[e["n"]] > 1]
    assert sorted(calls) == list(range(runs))
    spans = sorted(_spans(events))
    for before, after in itertools.pairwise(spans):
        assert before[1] <= after[0], ("two steps of a queue of one overlapped", before, after)

    # the frozen worker recovers: alone again, it serves new runs
    workers.started[1].send(signal.SIGTERM)
    assert workers.started[1].wait_exit() == 0
    later = client.batch_trigger("one-at-a-time", [BatchItem({"n": runs + k}) for k in range(3)])
    for handle in later:
        wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30, context=workers.describe)
    served = {e["n"] for e in _events(steps_log) if e["pid"] == first.pid}
    assert {runs, runs + 1, runs + 2} <= served, workers.describe()


def test_a_frozen_worker_starts_no_step_of_a_run_it_lost(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, db_url: str,
) -> None:
    """Frozen between two durable calls, past its lease: resumed, the worker must not start the
    next step even before its housekeeping learns it lost the run (the write lock holds that
    back), because by its own clock the lease ran out."""
    app = app_file("frozen_app.py")
    steps_log = tmp_path / "steps.log"
    first = start_worker(app, "--concurrency", "1")
    handle = client.trigger("one-at-a-time", {"n": 1, "head": 2.5})
    wait_until(lambda: any(e["event"] == "head" for e in _events(steps_log)), 20,
               workers.describe)
    first.send(signal.SIGSTOP)
    start_worker(app, "--concurrency", "1")
    run = wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                          context=workers.describe)
    assert run.attempts == 2  # the frozen worker's attempt crashed; the other one completed it
    with write_lock(db_url):
        resumed_at = time.time()
        first.send(signal.SIGCONT)
        time.sleep(1.0)
    time.sleep(1.0)
    late = [e for e in _events(steps_log) if e["pid"] == first.pid and e["at"] >= resumed_at]
    assert not late, (late, workers.describe())
    assert first.proc.poll() is None  # it lives on
    assert "no longer holds its lease" in first.log(), first.log()


def test_a_worker_frozen_before_the_commit_that_hands_an_early_heir_its_slot(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, db_url: str,
) -> None:
    """A run from the line starts as the run before it ends, before the commit that hands it
    the slot. Hold that commit back (the write lock), freeze the worker (SIGSTOP) past its lease,
    let another worker take everything over, then resume it: it starts nothing, the hand-over
    it was waiting for is refused or taken over, and neither the steps nor the stored times of
    the queue of one ever overlap."""
    app = app_file("frozen_app.py")
    steps_log = tmp_path / "steps.log"
    first = start_worker(app, "--concurrency", "2")
    runs = 40
    handles = client.batch_trigger("one-at-a-time", [BatchItem({"n": n}) for n in range(runs)])
    wait_until(lambda: sum(e["event"] == "end" for e in _events(steps_log)) >= 5, 30,
               workers.describe)
    with write_lock(db_url):
        locked_at = time.time()
        time.sleep(0.3)  # a run ends; its heir starts; the commit that hands it the slot waits
        first.send(signal.SIGSTOP)
        stopped_at = time.time()
        wait_until(lambda: _stopped(first.pid), 5, "the worker did not stop")
    early = [e for e in _events(steps_log)
             if e["event"] == "start" and locked_at <= e["at"] < stopped_at]
    assert early, ("no run started while the hand-over commit was held back",
                   workers.describe())
    start_worker(app, "--concurrency", "2")
    for handle in handles:
        wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=60, context=workers.describe)
    assert time.time() - stopped_at > 2.0  # past the frozen worker's lease
    with write_lock(db_url):
        resumed_at = time.time()
        first.send(signal.SIGCONT)
        time.sleep(1.0)  # the resumed worker's loop runs on while nothing can be committed
    time.sleep(1.5)  # its refused writes come back

    events = _events(steps_log)
    started_late = [e for e in events if e["pid"] == first.pid and e["event"] == "start"
                    and e["at"] >= resumed_at]
    assert not started_late, (started_late, workers.describe())
    spans = sorted(_spans(events))
    for before, after in itertools.pairwise(spans):
        assert before[1] <= after[0], ("two steps of a queue of one overlapped", before, after)
    calls: dict[int, int] = {}
    for e in events:
        if e["event"] == "start":
            calls[e["n"]] = calls.get(e["n"], 0) + 1
    assert sorted(calls) == list(range(runs))
    # a step runs twice only in a run the frozen worker had started (its result not stored)
    started_first = {e["n"] for e in events if e["pid"] == first.pid and e["event"] == "start"
                     and e["at"] < stopped_at}
    assert all(count == 1 or (count == 2 and n in started_first)
               for n, count in calls.items()), calls
    stored = sorted((r.started_at.timestamp(), r.finished_at.timestamp())
                    for r in client.runs.list(task="one-at-a-time", limit=100)
                    if r.started_at is not None and r.finished_at is not None)
    assert len(stored) == runs
    for before, after in itertools.pairwise(stored):
        assert before[1] <= after[0], ("stored times of a queue of one overlap", before, after)
    assert first.proc.poll() is None, first.describe()  # it lives on
