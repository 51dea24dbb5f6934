"""A worker frozen (SIGSTOP) while idle, knowing nothing was due and having claimed all there
was, then resumed (SIGCONT) past its lease: the messages it missed make it claim again, it takes
what nobody took meanwhile, and starts nothing another worker ran."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path)]


def test_a_frozen_idle_worker_claims_what_it_missed_and_nothing_else(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("frozen_app.py")
    steps_log = tmp_path / "steps.log"
    first = start_worker(app, "--concurrency", "2")
    warm = client.trigger("one-at-a-time", {"n": 0})
    wait_for_status(client, warm.id, RunStatus.COMPLETED, context=workers.describe)
    time.sleep(0.3)  # idle: its last claim found nothing more
    first.send(signal.SIGSTOP)
    delayed = client.trigger("one-at-a-time", {"n": 1}, delay=1.0)
    ready = client.trigger("one-at-a-time", {"n": 2})
    second = start_worker(app, "--concurrency", "2")
    for handle in (delayed, ready):
        wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                        context=workers.describe)
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    time.sleep(2.5)  # past the frozen worker's lease (2 s)
    missed = client.trigger("one-at-a-time", {"n": 3})
    resumed_at = time.time()
    first.send(signal.SIGCONT)
    run = wait_for_status(client, missed.id, RunStatus.COMPLETED, timeout=5,
                          context=workers.describe)
    assert run.attempts == 1

    events = _events(steps_log)
    starts = [e for e in events if e["event"] == "start"]
    by_n = {n: [e for e in starts if e["n"] == n] for n in range(4)}
    assert all(len(found) == 1 for found in by_n.values()), (starts, workers.describe())
    assert by_n[1][0]["pid"] == by_n[2][0]["pid"] == second.pid  # taken while it was frozen
    assert by_n[3][0]["pid"] == first.pid  # the resumed worker claimed what it missed
    assert by_n[3][0]["at"] - resumed_at < 3.0, workers.describe()
    assert not [e for e in starts if e["pid"] == first.pid and e["at"] >= resumed_at
                and e["n"] != 3], workers.describe()
    assert first.proc.poll() is None
