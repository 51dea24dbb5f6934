"""Results told with the message that announces a run's end (PostgreSQL: a small output rides
in the "done" notification), and waits that skip their first read: a result so delivered equals
the stored one, and whatever is not told is read."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tether import Retry, RunFailed, Tether, finals
from tether.clock import id_seconds, new_id
from tether.finals import Completed
from tether.handles import RunHandle
from tether.serialization import loads
from tether.storage.records import RunRecord
from tether.worker.worker import Worker

BIG = "x" * 1200  # past the 1,000 bytes an end's message carries


def _tasks(app: Tether) -> None:
    @app.task(id="echo")
    async def echo(value: Any) -> Any:
        return value

    @app.task(id="fail", retry=Retry(max_attempts=1))
    async def fail(value: Any) -> Any:
        raise ValueError(f"no: {value}")


class Reads:
    """Counts the reads of runs made through the app's storage."""

    def __init__(self, app: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        storage = app.storage
        for name in ("get_run", "get_runs"):
            original = getattr(storage, name)

            def counted(*args: Any, _original: Any = original) -> Any:
                self.count += 1
                return _original(*args)

            monkeypatch.setattr(storage, name, counted)


@pytest.fixture
def listening(app: Tether, monkeypatch: pytest.MonkeyPatch) -> Iterator[finals.Watcher]:
    """The app's watcher, listening since before the runs a test triggers (no clock margin)."""
    monkeypatch.setattr(finals, "MARGIN", 0.0)
    _tasks(app)
    watcher = finals._watcher(app.storage)
    time.sleep(0.01)  # ids made from now on are later than its start
    yield watcher


def _work_soon(app: Tether, delay: float = 0.2) -> threading.Thread:
    """Run the worker in a thread once the caller had time to start waiting."""

    def work() -> None:
        time.sleep(delay)
        asyncio.run(Worker(app).run_until_idle())

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _stored_output(app: Tether, run_id: str) -> Any:
    record = app.storage.get_run(run_id)
    assert record is not None and record.status == "COMPLETED"
    return loads(record.output)


def test_a_small_output_comes_with_the_end_and_equals_the_stored_one(
        app: Tether, backend: str, listening: finals.Watcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"text": "naïve ☃ \"quoted\" \\ back", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    handle = app.trigger("echo", value)
    reads = Reads(app, monkeypatch)
    worker = _work_soon(app)
    assert handle.result(timeout=10) == value
    worker.join(10)
    if backend == "postgres":
        assert isinstance(handle.settled, Completed)
        assert reads.count == 0  # neither before waiting nor after the end
    assert handle.result(timeout=0) == value  # kept on the handle
    monkeypatch.undo()
    assert _stored_output(app, handle.id) == value


def test_a_large_output_is_read(app: Tether, listening: finals.Watcher,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    handle = app.trigger("echo", {"big": BIG})
    reads = Reads(app, monkeypatch)
    worker = _work_soon(app)
    assert handle.result(timeout=10) == {"big": BIG}
    worker.join(10)
    assert reads.count >= 1
    assert not isinstance(handle.settled, Completed)


def test_a_failure_is_read_and_raised(app: Tether, listening: finals.Watcher) -> None:
    handle = app.trigger("fail", 7)
    worker = _work_soon(app)
    with pytest.raises(RunFailed, match="no: 7"):
        handle.result(timeout=10)
    worker.join(10)


def test_an_end_told_before_anyone_waited_is_remembered(
        app: Tether, backend: str, listening: finals.Watcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    handle = app.trigger("echo", [1, "two"])
    asyncio.run(Worker(app).run_until_idle())
    for _ in range(200):  # the watcher drains its listener at least every POLL_FALLBACK
        if handle.id in listening._recent:
            break
        time.sleep(0.01)
    assert handle.id in listening._recent
    reads = Reads(app, monkeypatch)
    assert handle.result(timeout=0) == [1, "two"]
    assert reads.count == (0 if backend == "postgres" else 1)  # SQLite's message has no output


def test_a_run_made_before_the_watcher_listened_is_read_first(
        app: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
    _tasks(app)
    handle = app.trigger("echo", 5)
    asyncio.run(Worker(app).run_until_idle())
    time.sleep(0.01)
    watcher = finals._watcher(app.storage)  # starts listening after the run ended
    assert not watcher.saw_every_end(handle.id)
    reads = Reads(app, monkeypatch)
    assert handle.result(timeout=0) == 5  # not a timeout: the first read finds it
    assert reads.count == 1
    assert isinstance(handle.settled, RunRecord)


def test_a_run_triggered_here_after_the_watcher_listened_needs_no_margin(
        app: Tether, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its trigger was sent after the listener listened, by this process's own clock: no
    clock margin (MARGIN, 1 s by default) makes its waiter read it first."""
    _tasks(app)
    watcher = finals._watcher(app.storage)
    handle = app.trigger("echo", 3)
    assert not watcher.saw_every_end(handle.id)  # by its id's time: within the margin
    reads = Reads(app, monkeypatch)
    thread = _work_soon(app)
    assert handle.result(timeout=10) == 3
    thread.join()
    assert reads.count == (0 if backend == "postgres" else 1)  # SQLite's message has no output
    other = RunHandle(app.storage, app.trigger("echo", 4).id)  # (a handle made from an id)
    asyncio.run(Worker(app).run_until_idle())
    assert other.result(timeout=10) == 4
    assert reads.count == (1 if backend == "postgres" else 2)  # made elsewhere, for all it knows


def test_a_wait_that_skipped_its_read_still_looks_before_timing_out(
        app: Tether, listening: finals.Watcher) -> None:
    handle = app.trigger("echo", 1)
    with pytest.raises(TimeoutError, match="still QUEUED"):
        handle.result(timeout=0.05)


def test_forgetting_ends_makes_waits_read_first(app: Tether, listening: finals.Watcher,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finals, "RECENT", 3)
    handle = app.trigger("echo", 1)
    assert listening.saw_every_end(handle.id)
    asyncio.run(Worker(app).run_until_idle())
    for i in range(5):  # ends of other runs push this one's out of memory
        listening._remember(f"{new_id('run')} {i}", time.time())
    assert not listening.saw_every_end(handle.id)
    assert handle.result(timeout=5) == 1


def test_an_id_says_when_it_was_made() -> None:
    before = time.time()
    made = id_seconds(new_id("run"))
    assert made is not None and before - 0.002 <= made <= time.time()
    assert id_seconds("not-an-id") is None
    assert id_seconds("run_" + "!" * 26) is None
