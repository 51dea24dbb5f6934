"""Per-key strategies with a real worker process, both backends: cancel_in_progress stops the
key's executing run as a cancel does and the new run takes its place; cancel_newest drops a
trigger for a full key (stored CANCELED) while the executing run goes on."""

from __future__ import annotations

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


def test_cancel_in_progress_stops_the_running_run_and_starts_the_new_one(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("key_strategies_app.py")
    side_file = tmp_path / "executions.log"
    worker = start_worker(app)
    old = client.trigger("deploy", {"n": 1}, concurrency_key="main").id
    other = client.trigger("deploy", {"n": 3}, concurrency_key="staging").id
    wait_for_line(side_file, "1 started", context=workers.describe)
    wait_for_line(side_file, "3 started", context=workers.describe)

    new = client.trigger("deploy", {"n": 2}, concurrency_key="main").id
    wait_for_line(side_file, "1 cancelled", timeout=10, context=workers.describe)
    wait_for_line(side_file, "2 started", timeout=10, context=workers.describe)
    replaced = client.runs.retrieve(old)
    assert replaced.status == RunStatus.CANCELED
    events = [e for e in client.runs.trace(old) if e.kind == "status" and e.name == "CANCELED"]
    assert events[-1].data["reason"] == (f"replaced by run {new} (queue 'deploys', key 'main', "
                                         "on_key_limit='cancel_in_progress')")
    with pytest.raises(RunFailed):
        client.runs.handle(old).result(timeout=5)

    (tmp_path / "release-2").touch()
    (tmp_path / "release-3").touch()
    assert wait_for_status(client, new, RunStatus.COMPLETED, context=workers.describe).output == 2
    assert wait_for_status(client, other, RunStatus.COMPLETED,
                           context=workers.describe).output == 3  # another key: untouched
    assert "1 finished" not in read_lines(side_file)
    assert worker.proc.poll() is None, worker.describe()


def test_cancel_newest_drops_the_trigger_while_the_running_run_goes_on(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("key_strategies_app.py")
    side_file = tmp_path / "executions.log"
    start_worker(app)
    running = client.trigger("sync", {"n": 1}, concurrency_key="acme").id
    wait_for_line(side_file, "1 started", context=workers.describe)

    dropped = client.trigger("sync", {"n": 2}, concurrency_key="acme")
    assert dropped.status() == RunStatus.CANCELED  # at once, in the trigger
    (tmp_path / "release-1").touch()
    assert wait_for_status(client, running, RunStatus.COMPLETED,
                           context=workers.describe).output == 1
    after = client.trigger("sync", {"n": 4}, concurrency_key="acme").id  # the key has room again
    (tmp_path / "release-4").touch()
    wait_for_status(client, after, RunStatus.COMPLETED, context=workers.describe)
    assert "2 started" not in read_lines(side_file)
    assert client.runs.retrieve(dropped.id).attempts == 0
