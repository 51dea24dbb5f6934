"""Durable waits with an injected clock: sleeps, tokens, child runs, replay checks."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    ConfigurationError,
    Context,
    ManualClock,
    Queue,
    ReplayMismatch,
    Retry,
    RunFailed,
    RunStatus,
    SyncContext,
    Tether,
    TokenNotFound,
    TokenStatus,
    TokenTimedOut,
    WaitTimeout,
    Worker,
)
from tether.errors import TokenRunEnded
from tether.models import RunResult

ONCE = Retry(max_attempts=1)


def test_sleep_parks_the_run_and_resumes_it_when_due(app: Tether, clock: ManualClock) -> None:
    calls: list[str] = []

    @app.task
    async def nap(payload: None, ctx: Context) -> str:
        await ctx.step("before", calls.append, "before")
        await ctx.sleep(3600)
        await ctx.step("after", calls.append, "after")
        return "rested"

    handle = nap.trigger()
    worker = Worker(app)
    drain(worker)
    parked = record(app, handle.id)
    assert parked.status == RunStatus.WAITING
    assert parked.available_at == pytest.approx(clock.now() + 3600)
    assert parked.lease_token is None and not worker.running  # no worker slot held
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED"]

    clock.advance(3599)
    assert drain(worker) == 0 and record(app, handle.id).status == RunStatus.WAITING
    clock.advance(1)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == "rested"
    assert calls == ["before", "after"]  # the completed step did not run again
    assert run.attempts == 1  # a wait is not a retry
    waits = [e for e in app.runs.trace(handle.id) if e.kind == "wait"]
    assert [(w.name, w.outcome) for w in waits] == [("sleep", "COMPLETED")]
    assert waits[0].duration_ms == pytest.approx(3600_000, rel=0.01)


def test_short_sleeps_stay_in_process(db_url: str, clock: ManualClock) -> None:
    app = Tether(db_url, clock=clock, inline_sleep=5.0)

    @app.task
    async def blink(payload: None, ctx: Context) -> str:
        await ctx.sleep(0.001)
        return "done"

    handle = blink.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    assert attempt_outcomes(app, handle.id) == ["COMPLETED"]  # never parked
    app.close()


def test_sleep_until_and_sync_tasks(app: Tether, clock: ManualClock) -> None:
    from datetime import UTC, datetime

    wake = datetime.fromtimestamp(clock.now() + 120, UTC)

    @app.task
    def alarm(payload: None, ctx: SyncContext) -> float:
        ctx.sleep_until(wake)
        return clock.now()

    handle = alarm.trigger()
    drain(Worker(app))
    assert record(app, handle.id).status == RunStatus.WAITING
    clock.advance(120)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == pytest.approx(wake.timestamp())


def test_a_waiting_run_holds_no_queue_slot(app: Tether, clock: ManualClock) -> None:
    @app.task(queue=Queue("narrow", concurrency=1))
    async def slow(payload: int, ctx: Context) -> int:
        await ctx.sleep(60)
        return payload

    handles = [slow.trigger(i) for i in range(3)]
    drain(Worker(app))
    assert [record(app, h.id).status for h in handles] == [RunStatus.WAITING] * 3
    clock.advance(60)
    drain(Worker(app))
    assert [app.runs.retrieve(h.id).output for h in handles] == [0, 1, 2]


def test_token_completed_resumes_the_run_with_its_data(app: Tether) -> None:
    created: list[str] = []

    @app.task
    async def approve(payload: None, ctx: Context) -> Any:
        token = await ctx.create_token(timeout="1h", tags=["approval"])
        created.append(token.id)
        return await ctx.wait_for_token(token)

    handle = approve.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING
    assert record(app, handle.id).waiting_for == created[0]
    [listed] = app.tokens.list(status="WAITING")
    assert listed.id == created[0] and listed.run_id == handle.id and listed.tags == ["approval"]

    token = app.tokens.complete(created[0], {"approved": True})
    assert token.status == TokenStatus.COMPLETED
    assert record(app, handle.id).status == RunStatus.QUEUED
    # completing again is harmless: the first data stays
    assert app.tokens.complete(created[0], {"approved": False}).output == {"approved": True}
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == {"approved": True}
    assert len(set(created)) == 1  # the replay got the same token back


def test_token_timeout_raises_wait_timeout(app: Tether, clock: ManualClock) -> None:
    seen: list[str] = []

    @app.task(retry=ONCE)
    async def approve(payload: None, ctx: Context) -> str:
        token = await ctx.create_token(timeout=600)
        try:
            await ctx.wait_for_token(token)
        except WaitTimeout as exc:
            seen.append(exc.token_id)
            return "timed out"
        return "approved"

    handle = approve.trigger()
    drain(Worker(app))
    token_id = app.tokens.list()[0].id
    clock.advance(601)
    with pytest.raises(TokenTimedOut):
        app.tokens.complete(token_id, {"late": True})
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == "timed out"
    assert seen == [token_id]
    assert app.tokens.retrieve(token_id).status == TokenStatus.TIMED_OUT


def test_unknown_tokens_are_clear_errors(app: Tether) -> None:
    with pytest.raises(TokenNotFound, match="no token with id 'waitpoint_nope'"):
        app.tokens.complete("waitpoint_nope", {})
    with pytest.raises(TokenNotFound):
        app.tokens.retrieve("waitpoint_nope")


def test_a_token_idempotency_key_ttl_ends_and_a_new_token_is_made(
        app: Tether, clock: ManualClock) -> None:
    """As over HTTP (`idempotencyKeyTTL`): the key finds its token until the TTL passed."""
    first = app.tokens.create(idempotency_key="review-1", idempotency_key_ttl="1h")
    clock.advance(3599)
    assert app.tokens.create(idempotency_key="review-1").id == first.id
    clock.advance(1)
    fresh = app.tokens.create(idempotency_key="review-1", idempotency_key_ttl=60)
    assert fresh.id != first.id and fresh.idempotency_key == first.idempotency_key == "review-1"
    forever = app.tokens.create(idempotency_key="review-2")
    clock.advance(10 * 365 * 86400)
    assert app.tokens.create(idempotency_key="review-2").id == forever.id
    with pytest.raises(ConfigurationError, match="idempotency_key_ttl"):
        app.tokens.create(idempotency_key="review-3", idempotency_key_ttl="soon")


def test_a_token_completed_before_the_wait_returns_at_once(app: Tether) -> None:
    token = app.tokens.create(idempotency_key="order-7")
    assert app.tokens.create(idempotency_key="order-7").id == token.id
    app.tokens.complete(token.id, "ok")

    @app.task
    async def follow(payload: str, ctx: Context) -> Any:
        return await ctx.wait_for_token(payload)

    handle = follow.trigger(token.id)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == "ok"
    assert attempt_outcomes(app, handle.id) == ["COMPLETED"]


def test_trigger_and_wait_in_one_queue_of_concurrency_one(app: Tether) -> None:
    lane = Queue("lane", concurrency=1)

    @app.task(queue=lane)
    async def child(payload: int) -> int:
        return payload * 2

    @app.task(queue=lane)
    async def parent(payload: int, ctx: Context) -> int:
        doubled = await ctx.trigger_and_wait(child, payload)
        return int(doubled) + 1

    handle = parent.trigger(20)
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == 41
    [kid] = app.runs.children(handle.id)
    assert kid.parent_id == handle.id and kid.root_id == handle.id
    assert record(app, kid.id).depth == 1


def test_batch_fan_out_returns_results_in_order(app: Tether) -> None:
    @app.task(retry=ONCE)
    async def square(payload: int) -> int:
        if payload == 7:
            raise ValueError("seven is unlucky")
        return payload * payload

    @app.task
    async def fan(payload: int, ctx: Context) -> list[Any]:
        results = await ctx.batch_trigger_and_wait(square, list(range(payload)))
        assert all(isinstance(r, RunResult) for r in results)
        return [r.output if r.ok else r.error["message"] for r in results]  # type: ignore[index]

    handle = fan.trigger(10)
    drain(Worker(app, concurrency=20))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED
    expected = [i * i for i in range(10)]
    expected[7] = "seven is unlucky"
    assert run.output == expected
    assert len(app.runs.children(handle.id)) == 10


def test_a_failed_child_raises_run_failed_in_the_parent(app: Tether) -> None:
    @app.task(retry=ONCE)
    async def broken(payload: None) -> None:
        raise RuntimeError("child broke")

    @app.task(retry=ONCE)
    async def careful(payload: None, ctx: Context) -> str:
        try:
            await ctx.trigger_and_wait(broken)
        except RunFailed as exc:
            return f"caught {exc.status}: {exc.error['message'] if exc.error else ''}"
        return "no error"

    handle = careful.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == "caught FAILED: child broke"


def test_children_are_triggered_once_when_the_parent_runs_again(app: Tether) -> None:
    @app.task
    async def leaf(payload: int) -> int:
        return payload

    @app.task(retry=Retry(max_attempts=2, min_delay=0, max_delay=0))
    async def root(payload: None, ctx: Context) -> int:
        await ctx.trigger(leaf, 1)
        total = int(await ctx.trigger_and_wait(leaf, 2))
        if ctx.attempt == 1:
            raise RuntimeError("fail after the children")
        return total

    handle = root.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == 2
    assert sorted(r.payload for r in app.runs.children(handle.id)) == [1, 2]


def test_cancel_a_waiting_parent_cancels_its_children(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def sleeper(payload: None, ctx: Context) -> None:
        await ctx.sleep(3600)

    @app.task
    async def boss(payload: None, ctx: Context) -> None:
        await ctx.batch_trigger_and_wait(sleeper, [None, None])

    handle = boss.trigger()
    drain(Worker(app))
    kids = app.runs.children(handle.id)
    assert [k.status for k in kids] == [RunStatus.WAITING] * 2
    app.runs.cancel(handle.id)
    assert app.runs.retrieve(handle.id).status == RunStatus.CANCELED
    assert {k.status for k in app.runs.children(handle.id)} == {RunStatus.CANCELED}
    clock.advance(3600)
    drain(Worker(app))
    assert {k.status for k in app.runs.children(handle.id)} == {RunStatus.CANCELED}


def test_code_changed_under_a_waiting_run_fails_clearly(app: Tether, clock: ManualClock) -> None:
    version = {"n": 1}

    @app.task
    async def evolving(payload: None, ctx: Context) -> str:
        await ctx.step("fetch" if version["n"] == 1 else "download", lambda: 1)
        await ctx.sleep(60)
        return "done"

    handle = evolving.trigger()
    drain(Worker(app))
    version["n"] = 2
    clock.advance(60)
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "'fetch'" in run.error["message"]
    assert "'download'" in run.error["message"]
    assert run.error["type"] == "tether.errors.ReplayMismatch"
    assert issubclass(ReplayMismatch, Exception)


def test_a_token_whose_run_was_canceled_is_not_pending(app: Tether) -> None:
    """Canceled while it waits: its token no longer looks pending, and completing it says
    that it would resume nothing (and leaves it as it was)."""
    created: list[str] = []

    @app.task
    async def approve(payload: None, ctx: Context) -> Any:
        token = await ctx.create_token(timeout="1h")
        created.append(token.id)
        return await ctx.wait_for_token(token)

    handle = approve.trigger()
    drain(Worker(app))
    [waiting] = app.tokens.list(status="WAITING")
    assert waiting.run_ended is None
    app.runs.cancel(handle.id)
    [ended] = app.tokens.list(status="WAITING")
    assert ended.id == created[0] and ended.run_ended == RunStatus.CANCELED
    assert app.tokens.retrieve(created[0]).run_ended == RunStatus.CANCELED
    with pytest.raises(TokenRunEnded, match=f"run {handle.id}, which created it, ended CANCELED"):
        app.tokens.complete(created[0], {"approved": True})
    assert app.tokens.retrieve(created[0]).status == TokenStatus.WAITING


def test_a_token_another_run_waits_for_can_be_completed_after_its_run_ended(app: Tether) -> None:
    """A run makes a token and ends; another run waits for it: completing it resumes that one."""

    @app.task
    async def maker(payload: None, ctx: Context) -> str:
        return (await ctx.create_token()).id

    @app.task
    async def waiter(payload: dict[str, str], ctx: Context) -> Any:
        return await ctx.wait_for_token(payload["token"])

    made = maker.trigger()
    worker = Worker(app)
    drain(worker)
    token_id = app.runs.retrieve(made.id).output
    other = waiter.trigger({"token": token_id})
    drain(worker)
    assert app.tokens.retrieve(token_id).run_ended == RunStatus.COMPLETED
    assert app.tokens.complete(token_id, 7).status == TokenStatus.COMPLETED
    drain(worker)
    assert app.runs.retrieve(other.id).output == 7


def test_a_waiting_run_shows_the_attempt_it_is_on(app: Tether, clock: ManualClock) -> None:
    """A wait does not give the attempt back: WAITING, resumed, and canceled while waiting, the
    run shows the attempt it is on (the first; the second after a failed one)."""
    failures = [1]

    @app.task(retry=Retry(max_attempts=3, min_delay=1.0, jitter=False))
    async def sleeper(payload: None, ctx: Context) -> int:
        if failures:
            failures.pop()
            raise ValueError("once")
        await ctx.sleep("1h")
        return ctx.attempt

    @app.task
    async def waits(payload: None, ctx: Context) -> None:
        await ctx.sleep("1h")

    handle = sleeper.trigger()
    worker = Worker(app)
    drain(worker)
    clock.advance(1.0)
    drain(worker)
    waiting = app.runs.retrieve(handle.id)
    assert waiting.status == RunStatus.WAITING and waiting.attempts == 2
    clock.advance(3600)
    drain(worker)
    done = app.runs.retrieve(handle.id)
    assert done.status == RunStatus.COMPLETED and done.output == 2 and done.attempts == 2

    other = waits.trigger()
    drain(worker)
    assert app.runs.retrieve(other.id).attempts == 1
    app.runs.cancel(other.id)
    canceled = app.runs.retrieve(other.id)
    assert canceled.status == RunStatus.CANCELED and canceled.attempts == 1
