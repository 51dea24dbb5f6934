"""A worker claims when something may be claimable: after a message, a poll, or a claim that
took all it asked for; not again after each attempt ends (PostgreSQL, where each claim is a
round trip). Runs are still found: one made without a message by the next poll, a run of a full
queue when a place frees."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tether import Queue, Tether
from tether.worker.worker import Worker


@pytest.fixture
def pg_url(db_url: str, backend: str) -> str:
    if backend != "postgres":
        pytest.skip("a claim is a round trip on PostgreSQL only")
    return db_url


def _app(url: str) -> Tether:
    app = Tether(url)

    @app.task(id="echo")
    async def echo(value: Any) -> Any:
        return value

    @app.task(id="one-at-a-time", queue=Queue("single", concurrency=1))
    async def one_at_a_time(value: Any) -> Any:
        await asyncio.sleep(0.05)
        return value

    return app


@contextmanager
def serving(app: Tether, **options: Any) -> Iterator[list[int]]:
    """A worker loop in a thread; yields [claims made so far]."""
    claims = [0]
    original: Callable[..., Any] = app.storage.claim_runs

    def counted(*args: Any, **kwargs: Any) -> Any:
        claims[0] += 1
        return original(*args, **kwargs)

    app.storage.claim_runs = counted  # type: ignore[method-assign]
    app.storage.list_workers(0.0)  # opened here, not by two threads at once
    worker = Worker(app, **options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not app.storage.list_workers(time.time() - 60) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield claims
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(20)
        loop.close()
        assert not thread.is_alive()


def test_one_claim_per_run_that_comes_alone(pg_url: str) -> None:
    app, producer = _app(pg_url), Tether(pg_url)
    with serving(app, concurrency=4) as claims:
        producer.trigger("echo", 0).result(timeout=10)
        time.sleep(0.1)
        before = claims[0]
        for i in range(20):
            assert producer.trigger("echo", i).result(timeout=10) == i
        time.sleep(0.1)
        made = claims[0] - before
    producer.close()
    app.close()
    # (one each, and a few the polling fallback adds: not one more after each attempt)
    assert 20 <= made <= 24, made


def test_a_run_whose_message_is_lost_is_found_by_the_next_poll(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app, producer = _app(pg_url), Tether(pg_url)
    with serving(app, concurrency=4, poll_interval=0.3):
        producer.trigger("echo", 0).result(timeout=10)
        time.sleep(0.5)  # idle: waiting for a message or the poll
        monkeypatch.setattr(producer.storage, "_channel", lambda group: "tether_nobody")
        start = time.monotonic()
        assert producer.trigger("echo", 1).result(timeout=10) == 1
        assert time.monotonic() - start < 2.0
    producer.close()
    app.close()


def test_runs_of_a_full_queue_start_as_places_free(pg_url: str) -> None:
    app, producer = _app(pg_url), Tether(pg_url)
    with serving(app, concurrency=4, poll_interval=30.0):  # no poll within the test
        handles = producer.batch_trigger("one-at-a-time", list(range(5)))
        assert [h.result(timeout=10) for h in handles] == list(range(5))
    producer.close()
    app.close()
