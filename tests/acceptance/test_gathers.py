"""Several waits at once with real worker processes, on both backends: a 1 s child, a 2 s sleep
and a token completed at 1.5 s resume the run once, at about 2 s, with the results in order;
a SIGKILL of the worker while the run is parked changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow

EXPECTED = ["child slept 1s", None, {"answer": 42}, "worked"]


def _token_of(side: Path, run_id: str) -> str | None:
    found = [line.split()[2] for line in read_lines(side) if line.startswith(f"token {run_id}")]
    return found[0] if found else None


def _gather_once(client: Tether, workers: Workers, side: Path, task: str,
                 after_park: Callable[[str], None] | None = None) -> None:
    began = time.time()
    run_id = client.trigger(task).id
    token = wait_until(lambda: _token_of(side, run_id), 15, workers.describe)
    wait_for_status(client, run_id, RunStatus.WAITING, context=workers.describe)
    if after_park is not None:
        after_park(run_id)
    time.sleep(max(0.0, began + 1.5 - time.time()))
    client.tokens.complete(token, {"answer": 42})
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=30,
                          context=workers.describe)
    assert run.output["results"] == EXPECTED
    woke = run.output["woke"] - began
    assert 1.9 <= woke <= 4.0, f"resumed after {woke:.2f}s, expected about 2s"
    lines = read_lines(side)
    assert lines.count(f"start {run_id}") == 2  # the first segment and one resume
    assert lines.count(f"work {run_id}") == 1  # the gathered step ran once
    outcomes = [a.status for a in client.storage.list_attempts(run_id)]
    assert outcomes == ["SUSPENDED", "COMPLETED"], outcomes
    assert run.attempts == 1


@pytest.mark.parametrize("task", ["gathered", "in-parallel"])
def test_a_child_a_sleep_and_a_token_resume_the_run_once(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path, task: str,
) -> None:
    start_worker(app_file("gathers_app.py"))
    _gather_once(client, workers, tmp_path / "executions.log", task)


def test_a_worker_killed_while_the_run_is_parked_changes_nothing(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("gathers_app.py")
    first = start_worker(app)

    def kill_and_replace(run_id: str) -> None:
        def child_parked() -> bool:
            children = client.runs.children(run_id)
            return bool(children) and children[0].status == RunStatus.WAITING

        wait_until(child_parked, 15, workers.describe)
        first.kill()  # SIGKILL while the parent and its child are parked
        start_worker(app)

    _gather_once(client, workers, tmp_path / "executions.log", "gathered", kill_and_replace)
