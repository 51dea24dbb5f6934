"""A worker that runs many attempts of sync tasks (each in a thread of its own) keeps its open
files flat: a thread's database connection is closed when the thread ends, not when the storage
closes. Before, every attempt of a sync task that wrote a step left one SQLite connection open
(two descriptors with the WAL's), so a worker ran out of descriptors after some hundreds of runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import drain

from tether import RunStatus, SyncContext, Tether, Worker

FDS = Path("/proc/self/fd")


def open_files() -> int:
    return len(os.listdir(FDS))


@pytest.mark.skipif(not FDS.is_dir(), reason="counts descriptors in /proc")
def test_many_sync_attempts_leave_no_connection_open(app: Tether) -> None:
    @app.task(id="sync-steps")
    def sync_steps(payload: Any, ctx: SyncContext) -> Any:
        first = ctx.step("first", lambda: payload)
        return ctx.step("second", lambda: first + 1)

    worker = Worker(app, concurrency=10)
    handles = app.batch_trigger("sync-steps", list(range(20)))
    drain(worker)  # warm: the worker's own threads and connections exist now
    before = open_files()
    handles += app.batch_trigger("sync-steps", list(range(300)))
    drain(worker)
    assert open_files() - before < 20
    assert all(h.status() == RunStatus.COMPLETED for h in handles)
    assert handles[-1].result(timeout=5) == 300
