"""Rate limits seen from the app (issue 22): a payload-keyed limit's key is computed at trigger
(a key function that fails refuses the trigger, nothing stored), a held-back run waits for its
bucket without an attempt, and a deploy that changes a queue's limit takes effect."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import drain, record

from tether import ConfigurationError, ManualClock, Queue, RateLimit, RunStatus, Tether, Worker
from tether.storage.records import RunFilter


def test_the_rate_key_comes_from_the_payload(app: Tether) -> None:
    @app.task(queue=Queue("mail", rate_limit=RateLimit(10, "1m", key=lambda p: p["tenant"])))
    async def send(payload: dict[str, Any]) -> None:
        return None

    handle = send.trigger({"tenant": "acme"})
    assert record(app, handle.id).rate_key == "acme"


@pytest.mark.parametrize("payload", [{"no_tenant": 1}, {"tenant": 7}])
def test_a_failing_key_function_refuses_the_trigger(app: Tether, payload: dict[str, Any]) -> None:
    @app.task(queue=Queue("mail", rate_limit=RateLimit(10, "1m", key=lambda p: p["tenant"])))
    async def send(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(ConfigurationError, match="rate limit key function of task 'send'"):
        send.trigger(payload)
    with pytest.raises(ConfigurationError, match="rate limit key function of task 'send'"):
        send.batch_trigger([{"tenant": "ok"}, payload])  # the whole batch: nothing stored
    assert app.storage.list_runs(RunFilter()) == []


def test_held_back_runs_wait_for_their_bucket_without_an_attempt(
        app: Tether, clock: ManualClock) -> None:
    @app.task(queue=Queue("api", rate_limit=RateLimit(2, "1s")))
    async def call(payload: int) -> int:
        return payload

    handles = [call.trigger(n) for n in range(3)]
    worker = Worker(app)
    assert drain(worker) == 1  # one now; the next in 0.5 s
    waiting = [record(app, h.id) for h in handles if record(app, h.id).status == RunStatus.QUEUED]
    assert len(waiting) == 2 and all(r.attempts == 0 for r in waiting)
    due = app.storage.next_ready_at([call.id], None, clock.now())
    assert due == pytest.approx(clock.now() + 0.5)
    clock.advance(0.5)
    assert drain(worker) == 1
    clock.advance(0.5)
    assert drain(worker) == 1
    assert all(record(app, h.id).attempts == 1 for h in handles)


def test_a_deploy_that_changes_the_limit_takes_effect(db_url: str, clock: ManualClock) -> None:
    def make(queue: Queue) -> Tether:
        app = Tether(db_url, clock=clock)

        @app.task(id="call", queue=queue)
        async def call(payload: int) -> int:
            return payload

        return app

    old = make(Queue("api", rate_limit=RateLimit(1, "1h")))
    try:
        for n in range(3):
            old.trigger("call", n)
        assert drain(Worker(old)) == 1
    finally:
        old.close()
    new = make(Queue("api", rate_limit=RateLimit(100, "1s", burst=5)))
    try:
        new.trigger("call", 3)  # (registers the queue as the new code declares it)
        assert drain(Worker(new)) == 3  # the new limit holds: burst 5, at once
        [stored] = [q for q in new.storage.list_queues() if q.name == "api"]
        assert (stored.rate_limit, stored.rate_burst) == (100.0, 5)
    finally:
        new.close()
