"""A worker killed with SIGKILL mid-run: steps resume from their checkpoints on a new worker, and a
`ctx.once` step that was interrupted is never called again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import WorkerProcess, Workers, wait_for_line, wait_for_status

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow

FLAVOURS = [pytest.param("", id="async"), pytest.param("-sync", id="sync")]


def attempt_outcomes(client: Tether, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.name, e.outcome) for e in client.runs.trace(run_id) if e.kind == "attempt"]


def stored_steps(client: Tether, run_id: str, count: int, within: float) -> None:
    """Wait (at most `within` seconds) until `count` steps of the run are stored."""
    deadline = time.monotonic() + within
    while True:
        stored = [e for e in client.runs.trace(run_id) if e.kind == "step"]
        if len(stored) >= count:
            return
        assert time.monotonic() < deadline, f"only {len(stored)} of {count} steps stored"
        time.sleep(0.01)


def kill_during(worker: WorkerProcess, side_file: Path, marker: str, workers: Workers) -> None:
    """Wait until a blocking function wrote `marker`, then SIGKILL its worker."""
    wait_for_line(side_file, marker, context=workers.describe)
    worker.kill()
    assert worker.proc.returncode == -9, worker.describe()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigkill_during_step_7_resumes_from_checkpoints(
    flavour: str, app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("steps_app.py")
    side_file = tmp_path / "executions.log"
    first = start_worker(app)
    run_id = client.trigger(f"ten-steps{flavour}", {"base": 100}).id

    wait_for_line(side_file, "step 7 attempt 1", context=workers.describe)
    # Steps 1-6 are stored behind the attempt's back (PostgreSQL's step pipeline: a step's result
    # is not waited for, and a crash before it is sent runs that step again, as documented); on
    # a machine under load that may take a moment, never seconds
    stored_steps(client, run_id, 6, within=5.0)
    first.kill()
    assert first.proc.returncode == -9, first.describe()
    assert client.runs.retrieve(run_id).status == RunStatus.EXECUTING

    (tmp_path / "release").touch()
    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=workers.describe)

    expected = [f"step {i} attempt 1" for i in range(1, 8)]
    expected += [f"step {i} attempt 2" for i in range(7, 11)]
    assert side_file.read_text().splitlines() == expected
    assert run.output == {"values": [100 + i for i in range(1, 11)], "attempt": 2}
    assert run.attempts == 2
    assert run.error is None
    assert attempt_outcomes(client, run_id) == [("attempt 1", "CRASHED"),
                                                ("attempt 2", "COMPLETED")]
    steps = {e.name: (e.outcome, e.attempt) for e in client.runs.trace(run_id) if e.kind == "step"}
    assert steps == {f"step-{i}": ("COMPLETED", 1 if i < 7 else 2) for i in range(1, 11)}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigkill_inside_once_step_fails_run_without_calling_it_again(
    flavour: str, app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("steps_app.py")
    side_file = tmp_path / "executions.log"
    first = start_worker(app)
    run_id = client.trigger(f"charge-once{flavour}", {"amount": 5}).id

    kill_during(first, side_file, "charge attempt 1", workers)
    (tmp_path / "release").touch()  # a second call would now return at once: it must not happen
    start_worker(app)
    run = wait_for_status(client, run_id, {RunStatus.FAILED, RunStatus.COMPLETED},
                          context=workers.describe)

    assert run.status == RunStatus.FAILED, run
    assert side_file.read_text().splitlines() == ["prepare attempt 1", "charge attempt 1"]
    assert run.error is not None
    assert run.error["type"] == "tether.errors.OnceInterrupted"
    assert "once step 'charge'" in run.error["message"]
    assert "not run again" in run.error["message"]
    assert run.attempts == 2  # failed at once: the third attempt the policy allows is not used
    assert attempt_outcomes(client, run_id) == [("attempt 1", "CRASHED"), ("attempt 2", "FAILED")]
    steps = {e.name: e.outcome for e in client.runs.trace(run_id) if e.kind == "step"}
    assert steps == {"prepare": "COMPLETED", "charge": "STARTED"}
