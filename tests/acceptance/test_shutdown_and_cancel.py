"""SIGTERM: running attempts finish within the grace period or are handed back uncounted.
Cancel from another process: an executing async run stops at its next await."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    wait_for_line,
    wait_for_status,
)

from tether import RunFailed, RunStatus, Tether

pytestmark = pytest.mark.slow


def attempt_outcomes(client: Tether, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.name, e.outcome) for e in client.runs.trace(run_id) if e.kind == "attempt"]


def test_sigterm_after_grace_hands_back_the_attempt_without_counting_it(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("shutdown_app.py")
    side_file = tmp_path / "executions.log"
    first = start_worker(app, "--grace", "0.5")
    run_id = client.trigger("long").id
    wait_for_line(side_file, "long started attempt 1", context=workers.describe)
    before = client.runs.retrieve(run_id)
    assert (before.status, before.attempts) == (RunStatus.EXECUTING, 1)

    sent = time.monotonic()
    first.send(signal.SIGTERM)
    assert first.wait_exit(timeout=15) == 0, first.describe()
    elapsed = time.monotonic() - sent
    assert 0.45 <= elapsed < 10, f"worker exited {elapsed:.2f}s after SIGTERM with --grace 0.5"

    handed_back = client.runs.retrieve(run_id)
    assert handed_back.status == RunStatus.QUEUED, handed_back
    assert handed_back.attempts == 0  # the attempt was given back, not counted
    assert attempt_outcomes(client, run_id) == [("attempt 1", "RELEASED")]
    assert read_lines(side_file) == ["long started attempt 1"]

    (tmp_path / "release").touch()
    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=workers.describe)
    assert run.output == {"attempt": 1}  # the next attempt has the same number
    assert run.attempts == 1
    assert read_lines(side_file) == ["long started attempt 1", "long started attempt 1",
                                     "long finished attempt 1"]
    assert attempt_outcomes(client, run_id) == [("attempt 1", "RELEASED"),
                                                ("attempt 1", "COMPLETED")]


def test_sigterm_lets_a_short_run_finish_then_exits_0(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("shutdown_app.py")
    side_file = tmp_path / "executions.log"
    worker = start_worker(app)
    run_id = client.trigger("short", {"n": 1, "seconds": 0.8}).id
    wait_for_line(side_file, "short 1 started", context=workers.describe)

    worker.send(signal.SIGTERM)
    worker.wait_log("stopping")
    assert "waiting up to 30s for 1 running attempt(s)" in worker.log(), worker.describe()
    later_id = client.trigger("short", {"n": 2, "seconds": 0}).id  # a stopping worker claims nothing
    assert worker.wait_exit(timeout=20) == 0, worker.describe()

    run = client.runs.retrieve(run_id)
    assert run.status == RunStatus.COMPLETED, run
    assert run.output == {"n": 1}
    assert run.attempts == 1
    assert attempt_outcomes(client, run_id) == [("attempt 1", "COMPLETED")]
    assert read_lines(side_file) == ["short 1 started", "short 1 finished"]
    later = client.runs.retrieve(later_id)
    assert (later.status, later.attempts) == (RunStatus.QUEUED, 0)


def test_second_sigterm_hands_back_at_once(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("shutdown_app.py")
    worker = start_worker(app)  # default grace: 30 s
    run_id = client.trigger("long").id
    wait_for_line(tmp_path / "executions.log", "long started attempt 1", context=workers.describe)

    worker.send(signal.SIGTERM)
    worker.wait_log("stopping")
    sent = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(timeout=10) == 0, worker.describe()
    assert time.monotonic() - sent < 5

    run = client.runs.retrieve(run_id)
    assert (run.status, run.attempts) == (RunStatus.QUEUED, 0), run
    assert attempt_outcomes(client, run_id) == [("attempt 1", "RELEASED")]


def test_cancel_from_another_process_stops_the_run_at_its_next_await(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("shutdown_app.py")
    side_file = tmp_path / "executions.log"
    worker = start_worker(app)
    run_id = client.trigger("cancellable").id
    wait_for_line(side_file, "waiting at the await", context=workers.describe)

    canceled = client.runs.cancel(run_id)
    assert canceled.status == RunStatus.CANCELED
    wait_for_line(side_file, "cancelled at the await", timeout=10, context=workers.describe)
    worker.wait_log("stopping its attempt (canceled)")

    # The worker is still serving: a later run completes on it.
    later_id = client.trigger("short", {"n": 7, "seconds": 0}).id
    wait_for_status(client, later_id, RunStatus.COMPLETED, context=workers.describe)

    assert read_lines(side_file) == ["first step", "waiting at the await", "cancelled at the await",
                                     "short 7 started", "short 7 finished"]
    run = client.runs.retrieve(run_id)
    assert run.status == RunStatus.CANCELED, run
    assert run.finished_at is not None
    assert run.attempts == 1
    assert attempt_outcomes(client, run_id) == [("attempt 1", "CANCELED")]
    assert [e.name for e in client.runs.trace(run_id) if e.kind == "step"] == ["first"]
    with pytest.raises(RunFailed) as failed:
        client.runs.handle(run_id).result(timeout=5)
    assert failed.value.status == RunStatus.CANCELED
    assert worker.proc.poll() is None, worker.describe()
