"""A worker claims when something may be claimable: after a message, a poll, or a claim that
took all it asked for; not again after each attempt ends (PostgreSQL, where each claim is a
round trip). Runs are still found: one made without a message by the next poll, a run of a full
queue when a place frees. It asks when the next delayed run is due only when that may have
changed, and still starts delayed runs, retries and sleeps on time."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tether import Context, Queue, RateLimit, Retry, Tether
from tether.storage.postgres.bus import channel
from tether.wakeup import READY, WORKERS
from tether.worker import claims as claims_module
from tether.worker.worker import Worker


def _app(url: str) -> Tether:
    app = Tether(url, inline_sleep=0.0)
    attempts: list[float] = []

    @app.task(id="flaky", retry=Retry(max_attempts=2, min_delay=0.4, jitter=False))
    async def flaky(value: Any) -> Any:
        attempts.append(time.time())
        if len(attempts) == 1:
            raise RuntimeError("first attempt")
        return attempts[1] - attempts[0]

    @app.task(id="nap")
    async def nap(value: Any, ctx: Context) -> Any:
        await ctx.sleep(0.5)  # parked (inline_sleep=0), then replayed
        return value

    @app.task(id="echo")
    async def echo(value: Any) -> Any:
        return value

    @app.task(id="one-at-a-time", queue=Queue("single", concurrency=1))
    async def one_at_a_time(value: Any) -> Any:
        await asyncio.sleep(value if isinstance(value, float) else 0.05)  # seconds, or 50 ms
        return value

    # (a worker with a rate-limited task among its own: it times when held-back runs may start)
    @app.task(id="rated", queue=Queue("rated", rate_limit=RateLimit(4, "1s")))
    async def rated(value: Any) -> Any:
        return time.time()

    return app


@contextmanager
def serving(app: Tether, **options: Any) -> Iterator[list[int]]:
    """A worker loop in a thread; yields [claims made so far, next_ready_at calls so far]."""
    claims = [0, 0]
    for index, name in enumerate(("claim_runs", "next_ready_at")):
        original: Callable[..., Any] = getattr(app.storage, name)

        def counted(*args: Any, _index: int = index, _original: Any = original,
                    **kwargs: Any) -> Any:
            claims[_index] += 1
            return _original(*args, **kwargs)

        setattr(app.storage, name, counted)
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


@pytest.mark.parametrize("offers", [False, True])
def test_one_claim_per_run_that_comes_alone(pg_url: str, offers: bool) -> None:
    """Without offers (worker/offers.py) each run that comes alone is claimed once; with them,
    an idle worker's offer takes it: no claim at all."""
    app, producer = _app(pg_url), Tether(pg_url)
    app.storage.offers = offers
    with serving(app, concurrency=4) as claims:
        producer.trigger("echo", 0).result(timeout=10)
        time.sleep(0.1)
        before = list(claims)
        handles = []
        for i in range(20):
            handles.append(producer.trigger("echo", i))
            assert handles[-1].result(timeout=10) == i
        time.sleep(0.1)
        made, looked = claims[0] - before[0], claims[1] - before[1]
        started_at_trigger = sum(
            producer.storage.list_attempts(h.id)[0].started_at == producer.storage.get_run(
                h.id).created_at for h in handles)  # type: ignore[union-attr]
    producer.close()
    app.close()
    # (one each, and a few the polling fallback adds: not one more after each attempt)
    if offers:
        assert made <= 4 and started_at_trigger == 20, (made, started_at_trigger)
    else:
        assert 20 <= made <= 24 and started_at_trigger == 0, (made, started_at_trigger)
    assert looked <= 4, looked  # when the next delayed run is due: nothing could change it


def test_a_claim_waits_for_more_runs_only_while_attempts_run(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While attempts run, a claim waits a moment (STREAM_DELAY) for the runs triggered
    meanwhile, so a burst of single triggers is claimed in a few round trips, not one each; a
    worker with nothing running claims at once. Checked on the mechanism, with the wait made
    long: how many runs one claim finds depends on how fast triggers and claims are on the
    machine, and counting the claims of a burst flaked under load."""
    monkeypatch.setattr(claims_module, "STREAM_DELAY", 0.3)
    app, producer = _app(pg_url), Tether(pg_url)
    app.storage.offers = False  # (claims are what is looked at: no offer takes the runs)
    calls: list[float] = []
    claim_runs = app.storage.claim_runs

    def timed(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return claim_runs(*args, **kwargs)

    app.storage.claim_runs = timed  # type: ignore[method-assign]

    def first_claim_after(payload: Any) -> float:
        start = time.monotonic()
        assert producer.trigger("echo", payload).result(timeout=10) == payload
        return min(t for t in calls if t >= start) - start

    with serving(app, concurrency=20):
        producer.trigger("echo", 0).result(timeout=10)
        idle = first_claim_after(1)
        busy = producer.trigger("one-at-a-time", 2.0)  # seconds: runs through what follows
        deadline = time.monotonic() + 10
        while (record := producer.storage.get_run(busy.id)) is not None \
                and record.status != "EXECUTING" and time.monotonic() < deadline:
            time.sleep(0.01)
        waited = first_claim_after(3)
        busy.result(timeout=10)
    producer.close()
    app.close()
    assert idle < 0.3 <= waited, (idle, waited)


@pytest.mark.parametrize("offers", [False, True])
def test_a_run_whose_message_is_lost_is_found_by_the_next_poll(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, offers: bool) -> None:
    """A run queued, or one that took the idle worker's offer (its "took" message lost), is
    started by the worker's next poll."""
    app, producer = _app(pg_url), Tether(pg_url)
    app.storage.offers = offers
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


def _wake_messages(pg_url: str, count: int, trigger: Callable[[Tether], None]) -> list[str]:
    """The workers' messages that `trigger(producer)` sends (the first `count`)."""
    import psycopg

    producer = _app(pg_url)
    producer.storage.migrate()
    base, _, schema = pg_url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel(schema, WORKERS)}"')
        trigger(producer)
        listener.execute("SELECT 1")
        messages = [n.payload for n in listener.notifies(timeout=1.0, stop_after=count)]
    producer.close()
    return messages


def test_new_runs_tell_workers_whether_any_is_delayed(pg_url: str) -> None:
    def trigger(producer: Tether) -> None:
        producer.trigger("echo", 1)
        producer.batch_trigger("echo", [2, 3])
        producer.trigger("echo", 4, delay=60)
        producer.batch_trigger("echo", [5, 6], delay=60)
        producer.trigger("echo", 7, tags=["t"])  # a run with tags: another statement
        producer.trigger("echo", 8, tags=["t"], delay=60)

    assert _wake_messages(pg_url, 6, trigger) == [READY, READY, "runs", "runs", READY, "runs"]


def test_runs_of_a_rate_limited_queue_wake_workers_as_news(pg_url: str) -> None:
    """Not READY: a claim may hold them back, and a worker then asks when their bucket has
    room (a READY run needs no such question)."""
    def trigger(producer: Tether) -> None:
        producer.trigger("rated", 1)
        producer.batch_trigger("rated", [2, 3])
        producer.trigger("rated", 4, tags=["t"])
        producer.trigger("echo", 5)

    assert _wake_messages(pg_url, 4, trigger) == ["runs", "runs", "runs", READY]


def test_runs_held_back_by_a_rate_start_when_their_bucket_has_room(pg_url: str) -> None:
    """4 a second, one at a time: the worker times each start itself (no poll in the test),
    and asks when the next is due only as runs are held back, not after every claim."""
    app, producer = _app(pg_url), Tether(pg_url)
    with serving(app, concurrency=4, poll_interval=30.0) as claims:
        producer.trigger("echo", 0).result(timeout=10)
        time.sleep(0.2)
        before = list(claims)
        handles = producer.batch_trigger("rated", list(range(4)))
        starts = sorted(h.result(timeout=10) for h in handles)
        looked = claims[1] - before[1]
    producer.close()
    app.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # on the bucket's beat (0.25 s), each timed by the worker itself: no poll comes in 30 s
    assert 0.6 <= starts[-1] - starts[0] < 1.5 and max(gaps) < 0.6, gaps
    assert looked <= 8, looked


def test_delayed_runs_retries_and_sleeps_start_on_time(pg_url: str) -> None:
    """On the worker's own timer: the housekeeping sweep, once a second, would be later."""
    app, producer = _app(pg_url), Tether(pg_url)
    late = 0.3
    with serving(app, concurrency=4, poll_interval=30.0):  # no poll within the test
        producer.trigger("echo", 0).result(timeout=10)
        time.sleep(0.2)  # idle, knowing nothing is due
        start = time.monotonic()
        assert producer.trigger("echo", 1, delay=0.5).result(timeout=10) == 1
        assert 0.5 <= time.monotonic() - start < 0.5 + late
        assert 0.4 <= producer.trigger("flaky", None).result(timeout=10) < 0.4 + late
        start = time.monotonic()
        assert producer.trigger("nap", 7).result(timeout=10) == 7
        assert 0.5 <= time.monotonic() - start < 0.5 + late
    producer.close()
    app.close()
