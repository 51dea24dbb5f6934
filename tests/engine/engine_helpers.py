"""Small helpers shared by the engine tests."""

from __future__ import annotations

import asyncio

from tether import Tether, Worker
from tether.storage.records import RunRecord


def drain(worker: Worker) -> int:
    """Execute every attempt that is ready at the app clock's now; the number of attempts run."""
    return asyncio.run(worker.run_until_idle())


def record(app: Tether, run_id: str) -> RunRecord:
    found = app.storage.get_run(run_id)
    assert found is not None
    return found


def attempt_outcomes(app: Tether, run_id: str) -> list[str]:
    return [a.status for a in app.storage.list_attempts(run_id)]
