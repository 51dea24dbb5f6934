"""Waiting for results: many threads at once, and what the waiting costs the database after."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from backends import POSTGRES
from tether import Tether, finals
from tether.worker.worker import Worker


def _double_task(app: Tether) -> None:
    @app.task(id="double")
    async def double(x: int) -> int:
        return 2 * x


def test_threads_wait_for_their_own_results(app: Tether) -> None:
    _double_task(app)
    handles = [app.trigger("double", i) for i in range(6)]
    results: dict[int, Any] = {}

    def wait(i: int) -> None:
        results[i] = handles[i].result(timeout=30)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    asyncio.run(Worker(app).run_until_idle())
    for t in threads:
        t.join(30)
    assert results == {i: 2 * i for i in range(6)}


def test_idle_watcher_stops_and_a_new_wait_starts_another(app: Tether,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finals, "IDLE_SECONDS", 0.1)
    _double_task(app)
    first = app.trigger("double", 1)
    asyncio.run(Worker(app).run_until_idle())
    assert first.result(timeout=5) == 2
    watcher = finals._watcher(app.storage)
    for _ in range(100):  # it looks at least every POLL_FALLBACK seconds
        if watcher.closed:
            break
        time.sleep(0.05)
    assert watcher.closed
    second = app.trigger("double", 2)
    asyncio.run(Worker(app).run_until_idle())
    assert second.result(timeout=5) == 4
    assert finals._watcher(app.storage) is not watcher


def _queue_usage(conn: psycopg.Connection[Any]) -> float:
    row = conn.execute("SELECT pg_notification_queue_usage()").fetchone()
    assert row is not None
    return float(row[0])


def test_a_thread_that_waited_once_does_not_hold_back_notifications(
        app: Tether, backend: str) -> None:
    """PostgreSQL keeps each notification until every listening connection read it: the
    listener a wait opened must go on being read after the wait returned."""
    if backend != "postgres":
        pytest.skip("PostgreSQL's notification queue")
    _double_task(app)
    handle = app.trigger("double", 3)
    asyncio.run(Worker(app).run_until_idle())
    assert handle.result(timeout=5) == 6  # this thread has waited once, and waits no more
    channel = f"tether_{app.storage.db.schema}_waiters"  # type: ignore[attr-defined]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        # more than the connection's socket buffers hold, so the server must keep the rest
        for _ in range(8):
            conn.execute("SELECT pg_notify(%s, 'done run_' || g) FROM generate_series(1, 50000) g",
                         (channel,))
        # held back, they would fill about 2e-3 of the queue
        for _ in range(200):
            if _queue_usage(conn) < 2e-4:
                break
            time.sleep(0.05)
        assert _queue_usage(conn) < 2e-4
