"""The stall detector (worker/stalls.py) on a real event loop in a thread, writing to a real
database: a callback that blocks the loop is reported once, with its frame in the stack, recorded
at once and cleared when the loop answers; stopping it from the loop's own thread (as the
worker's shutdown does) reports nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from tether import Tether
from tether.clock import SystemClock
from tether.storage.records import WorkerRecord
from tether.worker.stalls import StallWatch


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        while self.thread.ident is None:
            time.sleep(0.001)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.close()


def watch_for(app: Tether, loop_thread: LoopThread, stall_seconds: float) -> StallWatch:
    now = time.time()
    app.storage.register_worker(WorkerRecord("w-1", "here", 1, json.dumps(["*"]), 1, now, now,
                                             None, "v1"))
    changes: list[tuple[float | None, int]] = []
    assert loop_thread.thread.ident is not None
    watch = StallWatch(loop_thread.loop, loop_thread.thread.ident, stall_seconds, app.storage,
                       SystemClock(), "w-1", lambda since, n: changes.append((since, n)))
    watch.start()
    return watch


def stored(app: Tether) -> WorkerRecord:
    return next(w for w in app.storage.workers_seen(None, 100) if w.id == "w-1")


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # blocking code on the event loop


def test_a_blocked_loop_is_reported_once_and_recorded_until_it_answers(
        db_url: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tether.worker")
    app = Tether(db_url)
    watch = watch_for(app, loop_thread, 0.3)
    try:
        time.sleep(0.5)  # a loop that answers: nothing
        assert watch.stalls == 0 and stored(app).stalled_since is None
        blocked_at = time.time()
        loop_thread.loop.call_soon_threadsafe(hold_the_loop, 1.5)
        deadline = time.monotonic() + 1.2
        while stored(app).stalled_since is None and time.monotonic() < deadline:
            time.sleep(0.02)
        row = stored(app)
        assert row.stalled_since is not None and row.stalls == 1  # recorded during the block
        assert blocked_at - 0.3 <= row.stalled_since <= blocked_at + 0.3
        assert time.time() - blocked_at < 1.5
        deadline = time.monotonic() + 3
        while stored(app).stalled_since is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        row = stored(app)
        assert row.stalled_since is None and row.stalls == 1 and watch.stalls == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        text = warnings[0].getMessage()
        assert "in hold_the_loop" in text and "time.sleep(seconds)" in text, text
        assert any("answers again" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.INFO)
    finally:
        watch.stop()
        app.close()


def test_stopped_from_the_loops_thread_it_reports_nothing(
        db_url: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture) -> None:
    app = Tether(db_url)
    watch = watch_for(app, loop_thread, 0.5)
    try:
        time.sleep(0.3)
        done = threading.Event()
        took: list[float] = []

        def shut_down() -> None:  # as Worker._close: the loop waits for the watch to end
            time.sleep(0.3)  # busy past a ping (every 0.25 s), not yet a stall (0.5 s)
            started = time.monotonic()
            watch.stop()
            took.append(time.monotonic() - started)
            done.set()

        loop_thread.loop.call_soon_threadsafe(shut_down)
        assert done.wait(2)
        assert not watch.is_alive() and took[0] < 0.1, took
        assert watch.stalls == 0 and stored(app).stalls == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        watch.stop()
        app.close()
