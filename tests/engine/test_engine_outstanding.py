"""Reading many results: one read for a process's outstanding handles, never a stale end."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from engine_helpers import drain

from tether import Context, Retry, RunFailed, Tether, Worker
from tether.outstanding import BATCH, MIN_WIDTH, outstanding


class Reads:
    """Counts the storage reads `result()` makes (the storage itself stays real)."""

    def __init__(self, app: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
        self.single = 0
        self.batches: list[int] = []
        storage = app.storage
        get_run, get_runs = storage.get_run, storage.get_runs

        def counted_get_run(run_id: str) -> Any:
            self.single += 1
            return get_run(run_id)

        def counted_get_runs(run_ids: list[str]) -> Any:
            self.batches.append(len(run_ids))
            return get_runs(run_ids)

        monkeypatch.setattr(storage, "get_run", counted_get_run)
        monkeypatch.setattr(storage, "get_runs", counted_get_runs)


def _double(app: Tether) -> Callable[..., Any]:
    @app.task(id="double")
    async def double(x: int) -> int:
        return 2 * x
    return double


def test_one_read_settles_every_completed_handle(app: Tether,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _double(app)
    handles = [app.trigger("double", i) for i in range(50)]
    drain(Worker(app))
    reads = Reads(app, monkeypatch)
    assert [h.result(timeout=5) for h in handles] == [2 * i for i in range(50)]
    assert (reads.batches, reads.single) == ([50], 0)


def test_reads_are_bounded_by_the_batch_size(app: Tether,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _double(app)
    count = 2 * BATCH + 10
    handles = [app.trigger("double", i) for i in range(count)]
    drain(Worker(app))
    reads = Reads(app, monkeypatch)
    assert [h.result(timeout=5) for h in handles] == [2 * i for i in range(count)]
    assert reads.batches == [BATCH, BATCH, 10]


def test_a_failed_run_is_read_again_and_its_retry_seen(app: Tether) -> None:
    broken = [True]

    @app.task(retry=Retry(max_attempts=1))
    async def flaky(payload: Any, ctx: Context) -> str:
        if broken[0]:
            raise RuntimeError("not yet")
        return "fixed"

    _double(app)
    failing = flaky.trigger(None)
    other = app.trigger("double", 4)
    drain(Worker(app))
    assert other.result(timeout=5) == 8  # read both; the FAILED one must not be kept
    assert failing.settled is None
    with pytest.raises(RunFailed, match="not yet"):
        failing.result(timeout=5)
    broken[0] = False
    app.runs.retry(failing.id)
    drain(Worker(app))
    assert failing.result(timeout=5) == "fixed"


def test_dropped_handles_are_not_tracked(app: Tether) -> None:
    _double(app)
    kept = app.trigger("double", 1)
    for i in range(20):
        app.trigger("double", i)  # handle dropped at once
    gc.collect()
    drain(Worker(app))
    assert list(outstanding(app.storage)._handles.keys()) == [kept.id]
    assert kept.result(timeout=5) == 2
    assert not list(outstanding(app.storage)._handles.keys())


def test_runs_still_going_make_batches_back_off(app: Tether,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Handles of long runs held while one result is awaited repeatedly: the wide read is
    made ever more rarely, so its cost stays a small share."""
    _double(app)
    waiting = [app.trigger("double", i, delay=3600) for i in range(30)]
    done = app.trigger("double", 5)
    drain(Worker(app))
    pending = outstanding(app.storage)
    reads = Reads(app, monkeypatch)
    for _ in range(100):
        record = pending.read(app.storage, done.id)  # a reader that keeps looking
        assert record is not None
    assert done.settled is not None and waiting[0].settled is None
    # the first read settles `done` only (not another): back off 1, 2, 4, 8, 16, 32, 64 reads
    assert len(reads.batches) <= 8
    assert reads.single + len(reads.batches) == 100


def test_a_read_is_about_twice_as_wide_as_what_the_last_one_settled(
        app: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs that end a few at a time are not read a hundred at a time."""
    _double(app)
    done = [app.trigger("double", i) for i in range(5)]
    waiting = [app.trigger("double", i, delay=3600) for i in range(45)]
    drain(Worker(app))
    reads = Reads(app, monkeypatch)
    assert done[0].result(timeout=5) == 0  # settles the 4 other finished runs
    assert all(h.settled is not None for h in done)
    outstanding(app.storage).read(app.storage, waiting[0].id)
    assert reads.batches == [50, MIN_WIDTH + 2 * 4]
