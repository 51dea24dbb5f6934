"""A run whose worker dies keeps its place in the queue: its next attempt does not wait behind
the runs queued after it, however many there are."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status, wait_until

from tether import BatchItem, RunStatus, Tether

pytestmark = pytest.mark.slow

BACKLOG = 500


def test_a_crashed_run_starts_again_ahead_of_the_backlog(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("backlog_app.py")
    log = tmp_path / "backlog.log"
    doomed = start_worker(app, "--concurrency", "1")
    handle = client.trigger("victim", {})
    wait_until(lambda: read_lines(log), 20, workers.describe)
    client.batch_trigger("filler", [BatchItem({"n": n}) for n in range(BACKLOG)])
    start_worker(app, "--concurrency", "1")  # works through the backlog, one run at a time
    doomed.kill()
    run = wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=60,
                          context=workers.describe)
    assert run.output == 2
    attempts = {e.name: e for e in client.runs.trace(handle.id) if e.kind == "attempt"}
    crashed, again = attempts["attempt 1"], attempts["attempt 2"]
    assert crashed.outcome == "CRASHED" and crashed.ended_at is not None
    waited = (again.at - crashed.ended_at).total_seconds()
    left = len(client.runs.list(status="queued", task="filler", limit=BACKLOG))
    assert waited < 1.0, (waited, f"{left} fillers still queued", workers.describe())
    assert left > 100  # it did not wait for the backlog to drain
    assert [json.loads(line)["attempt"] for line in read_lines(log)] == [1, 2]
