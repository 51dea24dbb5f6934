"""Durable waits with real worker processes, on both backends: every worker killed while runs
sleep, tokens completed from another process, fan-out/fan-in, a parent and child in one queue of
concurrency 1."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from acceptance_support import (
    TETHER_EXE,
    WorkerProcess,
    Workers,
    make_env,
    read_lines,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow


def test_every_worker_killed_while_50_runs_sleep(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("waits_app.py")
    first, second = start_worker(app), start_worker(app)
    due = time.time() + 4.0
    until_iso = datetime.fromtimestamp(due, UTC).isoformat()
    ids = [h.id for h in client.batch_trigger("nap", [{"until_iso": until_iso}] * 50)]

    def all_parked() -> bool:
        return all(r.status == RunStatus.WAITING for r in map(client.runs.retrieve, ids))

    wait_until(all_parked, 15, lambda: f"not all 50 runs parked\n{workers.describe()}")
    first.kill()
    second.kill()  # nothing is running anywhere now
    assert time.time() < due, "the runs should still be sleeping when the workers die"

    start_worker(app)
    finished = [wait_for_status(client, i, RunStatus.COMPLETED, timeout=30,
                                context=workers.describe) for i in ids]
    for run in finished:
        assert run.output["woke"] >= due - 0.01  # not early
        assert run.output["woke"] <= due + 3.0, run  # on time (a second worker had to start)
        assert run.attempts == 1
    lines = read_lines(tmp_path / "executions.log")
    assert sorted(line for line in lines if line.startswith("before")) == sorted(
        f"before {i}" for i in ids)  # the step before the sleep ran once per run
    assert len([line for line in lines if line.startswith("after")]) == 50


def test_a_token_completed_from_another_process(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("waits_app.py")
    start_worker(app)
    approved = client.trigger("approval", {"timeout": "1h"}).id
    ignored = client.trigger("approval", {"timeout": "2s"}).id
    side = tmp_path / "executions.log"

    def token_of(run_id: str) -> str | None:
        found = [line.split()[2] for line in read_lines(side) if line.startswith(f"token {run_id}")]
        return found[0] if found else None

    token_id = wait_until(lambda: token_of(approved), 15, workers.describe)
    wait_for_status(client, approved, RunStatus.WAITING, context=workers.describe)

    # the CLI completes it: another process
    done = subprocess.run([str(TETHER_EXE), "tokens", "complete", token_id, '{"ok": 1}'],
                          env=make_env(client.database_url), cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done
    run = wait_for_status(client, approved, RunStatus.COMPLETED, context=workers.describe)
    assert run.output == {"data": {"ok": 1}}

    late = wait_for_status(client, ignored, RunStatus.COMPLETED, timeout=15,
                           context=workers.describe)
    assert late.output == {"timed_out": True}


def test_fan_out_of_100_children_returns_results_in_order(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("waits_app.py")
    start_worker(app, "--concurrency", "20")
    start_worker(app, "--concurrency", "20")
    run_id = client.trigger("fan-out", 100).id
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=60,
                          context=workers.describe)
    expected: list[object] = [i * i for i in range(100)]
    expected[13] = "error: thirteen"
    assert run.output == expected
    children = client.runs.children(run_id)
    assert len(children) == 100
    assert sum(c.status == RunStatus.FAILED for c in children) == 1
    lines = read_lines(tmp_path / "executions.log")
    assert lines.count("fan_out resumed with 100") == 1  # woken once, when the last child ended


def test_parent_and_child_in_one_queue_of_concurrency_one(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("waits_app.py")
    start_worker(app)
    start_worker(app)
    ids = [client.trigger("lane-parent", i).id for i in range(3)]
    for i, run_id in enumerate(ids):
        run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=30,
                              context=workers.describe)
        assert run.output == (i + 1) * 10
