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


def _noop_app(path: Path) -> Tether:
    app = Tether(f"sqlite:///{path}")

    @app.task
    async def noop(payload: Any) -> Any:
        return payload

    return app


@pytest.mark.timeout(60)
def test_runs_arriving_while_attempts_end_are_claimed_in_the_ending_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    app = _noop_app(tmp_path / "busy.db")
    worker = Worker(app, concurrency=20)
    # a busy worker gathers the ends of attempts before committing them; a long gathering
    # makes the runs triggered meanwhile plentiful and the test independent of the machine
    monkeypatch.setattr(worker, "gather_delay", lambda *_: 0.05)
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


@pytest.mark.timeout(60)
def test_a_batch_commits_at_once_when_the_attempts_of_all_places_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gathering ends of attempts waits for attempts still running (and for runs arriving for
    free places); once the attempts of all the worker's places have ended there is nothing to
    wait for: the commit can claim no more than it frees."""
    app = _noop_app(tmp_path / "all.db")
    worker = Worker(app, concurrency=10)
    monkeypatch.setattr(worker, "gather_delay", lambda *_: 30.0)  # a gathering that never ends
    handles = app.batch_trigger("noop", list(range(30)))

    async def serve() -> float:
        task = asyncio.create_task(worker.run())
        started = time.monotonic()
        while any(h.status() != RunStatus.COMPLETED for h in handles):
            assert time.monotonic() - started < 20
            await asyncio.sleep(0.01)
        worker.stop()
        await task
        return time.monotonic() - started

    assert asyncio.run(serve()) < 5  # three commits of 10, none waiting out the 30 s
    assert [h.result(timeout=5) for h in handles] == list(range(30))
    app.close()


def test_a_claim_of_several_runs_marks_the_worker_busy(tmp_path: Path) -> None:
    """Three runs claimed within a millisecond, in one claim or several, make the worker gather
    ends of attempts before committing; a run claimed alone does not (no added latency)."""
    app = _noop_app(tmp_path / "marks.db")

    async def gathering_after(runs: int) -> float:
        worker = Worker(app, concurrency=10)
        app.batch_trigger("noop", list(range(runs)))
        worker._claim(runs)
        delay = worker.gather_delay()
        await asyncio.wait([e.task for e in worker.running.values() if e.task])
        return delay

    assert asyncio.run(gathering_after(1)) == 0.0
    assert asyncio.run(gathering_after(3)) > 0.0
    app.close()
