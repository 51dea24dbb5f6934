"""Tasks with isolation="process" on real `tether worker` processes, both backends: hard
timeouts and cancels kill the attempt's process, memory limits hold, a crashing process fails
only its attempt, steps are durable across a killed worker, and a frozen worker's child starts
no step once the lease is gone."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status, wait_until

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow


def _events(app: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(app.parent / "events.log")]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count: it ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children_of(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _event(app: Path, name: str, workers: Workers) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        return next((e for e in _events(app) if e["event"] == name), None)

    return wait_until(seen, 20, lambda: f"no {name!r} event\n{workers.describe()}")


def test_a_spinning_task_times_out_within_3_seconds_and_the_worker_goes_on(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app, "--concurrency", "2")
    run = client.trigger("spin")
    began = _event(app, "spin", workers)
    assert began["pid"] != worker.pid and began["ppid"] == worker.pid  # in a child process
    ended = wait_for_status(client, run.id, RunStatus.TIMED_OUT, timeout=10,
                            context=workers.describe)
    assert ended.finished_at is not None
    assert ended.finished_at.timestamp() - began["at"] < 3.0, (ended, began)
    assert ended.error is not None and "max_duration of 1s" in ended.error["message"]
    wait_until(lambda: not _alive(began["pid"]), 5, "the spinning process still runs")
    # the worker is unharmed: another isolated run completes, in a fresh process
    after = client.trigger("noop")
    done = wait_for_status(client, after.id, RunStatus.COMPLETED, timeout=15,
                           context=workers.describe)
    assert done.output["pid"] != began["pid"]
    assert worker.proc.poll() is None


def test_allocating_past_memory_limit_fails_the_attempt_with_a_clear_error(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app)
    run = client.trigger("hog")
    ended = wait_for_status(client, run.id, RunStatus.FAILED, timeout=20,
                            context=workers.describe)
    assert ended.error is not None, ended
    assert ended.error["type"] == "tether.MemoryLimitExceeded", ended.error
    assert "memory_limit of 200MB" in ended.error["message"], ended.error
    assert "MemoryError" in ended.error["traceback"]
    after = client.trigger("noop")
    wait_for_status(client, after.id, RunStatus.COMPLETED, timeout=15, context=workers.describe)
    assert worker.proc.poll() is None


def test_a_process_that_aborts_fails_its_attempt_and_the_retry_succeeds(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app)
    run = client.trigger("abort-once")
    done = wait_for_status(client, run.id, RunStatus.COMPLETED, timeout=20,
                           context=workers.describe)
    assert done.output == {"attempt": 2}
    assert done.attempts == 2
    attempts = [e for e in client.runs.trace(run.id) if e.kind == "attempt"]
    assert [a.outcome for a in attempts] == ["FAILED", "COMPLETED"], attempts
    assert "died of SIGABRT (signal 6)" in worker.log()
    assert worker.proc.poll() is None


def test_a_segfault_fails_the_attempt_with_the_signal_named(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app)
    run = client.trigger("segfault")
    ended = wait_for_status(client, run.id, RunStatus.FAILED, timeout=20,
                            context=workers.describe)
    assert ended.error is not None and ended.error["type"] == "tether.ProcessDied", ended.error
    assert "died of SIGSEGV (signal 11)" in ended.error["message"], ended.error
    after = client.trigger("noop")
    wait_for_status(client, after.id, RunStatus.COMPLETED, timeout=15, context=workers.describe)
    assert worker.proc.poll() is None


def test_canceling_a_spinning_run_kills_its_process_promptly(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app)
    run = client.trigger("spin-forever")
    began = _event(app, "spin-forever", workers)
    time.sleep(0.3)
    asked = time.monotonic()
    client.runs.cancel(run.id)
    wait_until(lambda: not _alive(began["pid"]), 5,
               lambda: f"the canceled run's process still runs\n{workers.describe()}")
    assert time.monotonic() - asked < 3.0
    assert client.runs.retrieve(run.id).status == RunStatus.CANCELED
    after = client.trigger("noop")
    wait_for_status(client, after.id, RunStatus.COMPLETED, timeout=15, context=workers.describe)
    assert worker.proc.poll() is None


def test_steps_survive_a_killed_worker_and_are_not_run_again(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    first = start_worker(app)
    run = client.trigger("steps", {"count": 4, "hold": 1})
    holding = _event(app, "holding", workers)
    child = holding["pid"]
    assert holding["ppid"] == first.pid
    first.kill()  # SIGKILL: no hand-back; the child dies with it
    wait_until(lambda: not _alive(child), 5, "the killed worker's child process runs on")
    (app.parent / "release").touch()
    start_worker(app)
    done = wait_for_status(client, run.id, RunStatus.COMPLETED, timeout=30,
                           context=workers.describe)
    assert done.output == [0, 1, 2, 3]
    starts = [e["n"] for e in _events(app) if e["event"] == "step-start"]
    assert sorted(starts) == [0, 1, 2, 3], starts  # s0 and s1 replayed from their rows
    assert done.metadata == {"steps": 4}
    logs = [json.dumps(e.data) for e in client.runs.trace(run.id) if e.kind == "log"]
    assert any("all 4 steps done" in line for line in logs), logs


def test_a_frozen_workers_child_starts_no_step_once_the_lease_is_gone(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    first = start_worker(app)
    run = client.trigger("steps", {"count": 100, "seconds": 0.1})

    def some_steps() -> bool:
        return sum(e["event"] == "step-end" for e in _events(app)) >= 3

    wait_until(some_steps, 20, workers.describe)
    first.send(signal.SIGSTOP)  # the worker only: its child runs on, and must stop by itself
    stopped_at = time.time()
    # nobody takes the run over for a while: the child alone must see the lease run out
    time.sleep(4.0)
    second = start_worker(app)
    done = wait_for_status(client, run.id, RunStatus.COMPLETED, timeout=60,
                           context=workers.describe)
    assert done.output == list(range(100))
    first.send(signal.SIGCONT)
    resumed_at = time.time()
    time.sleep(1.5)  # the resumed worker hears its lease is gone

    events = _events(app)
    late = [e for e in events if e["event"] == "step-start" and e["ppid"] == first.pid
            and e["at"] > stopped_at + 2.0]  # past the lease (2 s) by the frozen worker's clock
    assert not late, (late, stopped_at, resumed_at, workers.describe())
    assert any(e["ppid"] == second.pid for e in events if e["event"] == "step-start")
    # the resumed worker goes on serving
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    after = client.trigger("noop")
    wait_for_status(client, after.id, RunStatus.COMPLETED, timeout=15, context=workers.describe)
    assert first.proc.poll() is None


def test_a_worker_shutting_down_hands_an_isolated_run_back_and_stops_its_process(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    app = app_file("isolation_app.py")
    worker = start_worker(app, "--grace", "0.5")
    run = client.trigger("spin-forever")
    began = _event(app, "spin-forever", workers)
    children = _children_of(worker.pid)
    assert began["pid"] in children and len(children) >= 2, children  # a spare is kept warm
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    wait_until(lambda: not any(_alive(pid) for pid in children), 5,
               lambda: f"the worker's child processes outlived it\n{workers.describe()}")
    back = client.runs.retrieve(run.id)
    assert back.status == RunStatus.QUEUED, back
    assert back.attempts == 0, back  # a hand-back is not counted


def test_current_context_in_a_child_process(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    """tether.current_context() / current_sync_context() work in isolated attempts as in the
    worker (agents and libraries find the run's context through them)."""
    app = app_file("isolation_app.py")
    worker = start_worker(app, "--concurrency", "2")
    for task in ("whoami", "whoami-sync"):
        run = client.trigger(task)
        done = wait_for_status(client, run.id, RunStatus.COMPLETED, timeout=20,
                               context=workers.describe)
        assert done.output["run_id"] == run.id and done.output["pid"] != worker.pid
