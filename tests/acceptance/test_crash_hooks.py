"""`on_failure` runs for a run whose final attempt crashed: a real worker is SIGKILLed during
the attempt; the hook is owed in the commit that ends the run (whoever reaps it) and runs once,
with the same arguments as an ordinary failure's hook, on a worker that has the task's code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    wait_for_line,
    wait_for_lines,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether
from tether.worker.housekeeping import reap

pytestmark = pytest.mark.slow


def kill_first_attempt(app: Path, start_worker: Callable[..., WorkerProcess], workers: Workers,
                       client: Tether, tmp_path: Path) -> tuple[str, WorkerProcess]:
    first = start_worker(app)
    run_id = client.trigger("blocks", {"order": 7}).id
    wait_for_line(tmp_path / "executions.log", f"started {run_id} attempt 1",
                  context=workers.describe)
    first.kill()
    assert first.proc.returncode == -9, first.describe()
    return run_id, first


def test_on_failure_runs_after_the_final_attempt_was_sigkilled(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("hooks_app.py")
    run_id, _ = kill_first_attempt(app, start_worker, workers, client, tmp_path)
    assert not (tmp_path / "hooks.log").exists()

    second = start_worker(app)  # finds the dead worker's run, ends it FAILED, runs the hook
    run = wait_for_status(client, run_id, RunStatus.FAILED, context=workers.describe)
    [line] = wait_for_lines(tmp_path / "hooks.log", 1, context=workers.describe)
    assert run.error is not None and run.error["type"] == "tether.WorkerCrashed"
    assert json.loads(line) == {"run": run_id, "attempt": 1, "payload": {"order": 7},
                                "error_type": "tether.WorkerCrashed",
                                "message": run.error["message"]}
    wait_until(lambda: client.storage.owed_hooks() == [], 10, "the hook is still owed")

    # an ordinary failure calls the hook with arguments of the same shape
    failed = client.trigger("fails", {"order": 8}).id
    lines = wait_for_lines(tmp_path / "hooks.log", 2, context=workers.describe)
    assert json.loads(lines[1])["run"] == failed and json.loads(lines[1])["attempt"] == 1
    assert set(json.loads(lines[1])) == set(json.loads(lines[0]))
    second.kill()
    assert len(read_lines(tmp_path / "hooks.log")) == 2  # once each
    assert "running the failure hook its crashed attempt left owed" in second.log()


def test_the_hook_stays_owed_when_a_process_without_the_code_ends_the_run(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("hooks_app.py")
    run_id, first = kill_first_attempt(app, start_worker, workers, client, tmp_path)
    dead = client.storage.get_run(run_id)
    assert dead is not None and dead.worker_id is not None
    # the reaper here has no hooks (the test process's app defines no task): the run ends
    # FAILED and its hook is owed in that same commit
    assert reap(client.storage, time.time(), [dead.worker_id]) == 1
    assert client.runs.retrieve(run_id).status == RunStatus.FAILED
    assert client.storage.owed_hooks() == [run_id]
    time.sleep(0.5)
    assert not (tmp_path / "hooks.log").exists()

    start_worker(app)  # a worker with the task's code pays what is owed
    [line] = wait_for_lines(tmp_path / "hooks.log", 1, context=workers.describe)
    assert json.loads(line)["run"] == run_id
    assert json.loads(line)["error_type"] == "tether.WorkerCrashed"
    wait_until(lambda: client.storage.owed_hooks() == [], 10, "the hook is still owed")
    assert first.proc.returncode == -9
