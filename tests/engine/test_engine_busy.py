"""A busy SQLite worker: runs that arrive while attempts are ending are claimed in the commit that
ends those attempts, not in a transaction of their own (each transaction makes every other
process wait for SQLite's write lock)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tether import RunStatus, Tether, Worker

RUNS = 40


@pytest.mark.timeout(60)
def test_runs_arriving_while_attempts_end_are_claimed_in_the_ending_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    app = Tether(url)

    @app.task
    async def noop(payload: Any) -> Any:
        return payload

    worker = Worker(app, concurrency=20)
    # a busy worker gathers the ends of attempts before committing them; a long gathering
    # makes the runs triggered meanwhile plentiful and the test independent of the machine
    monkeypatch.setattr(worker, "gather_delay", lambda: 0.05)
    separate: list[int] = []  # runs taken by claims of their own (not in an ending commit)
    claim_runs = app.storage.claim_runs

    def counted(*args: Any, **kwargs: Any) -> Any:
        claimed = claim_runs(*args, **kwargs)
        if claimed:
            separate.append(len(claimed))
        return claimed

    monkeypatch.setattr(app.storage, "claim_runs", counted)
    producer = Tether(url)  # another handle, as another process would be
    handles: list[Any] = []

    def trigger() -> None:
        for i in range(RUNS):
            handles.append(producer.trigger("noop", i))
            time.sleep(0.005)

    async def serve() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)  # registered and idle
        thread = threading.Thread(target=trigger)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                h.status() != RunStatus.COMPLETED for h in handles):
            await asyncio.sleep(0.02)
        worker.stop()
        await task

    asyncio.run(serve())
    assert [h.result(timeout=5) for h in handles] == list(range(RUNS))
    assert all(app.runs.retrieve(h.id).attempts == 1 for h in handles)
    # one claim per run before; now claims of their own happen only while nothing is ending
    assert len(separate) <= RUNS // 4, separate
    producer.close()
    app.close()
