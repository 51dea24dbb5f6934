"""Named rate limits with an injected clock: app.rate_limits, ctx.acquire and
ctx.step(rate_limit=...): taking at once, parking on a long wait (the slot free meanwhile),
replays that take nothing again, clear errors."""

from __future__ import annotations

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    ConfigurationError,
    Context,
    ManualClock,
    Retry,
    RunStatus,
    SyncContext,
    Tether,
    UnknownRateLimit,
    Worker,
)
from tether.engine.acquire import INLINE_WAIT
from tether.trace import span_label

ONCE = Retry(max_attempts=1)


def test_set_get_list_delete(app: Tether, clock: ManualClock) -> None:
    made = app.rate_limits.set("openai", 500, "1m")
    assert (made.name, made.limit, made.period, made.burst) == ("openai", 500, 60, 1)
    app.rate_limits.set("tokens", 90_000, 60, burst=8_000)
    assert app.rate_limits.get("openai").per_second == pytest.approx(500 / 60)
    assert [lim.name for lim in app.rate_limits.list()] == ["openai", "tokens"]
    changed = app.rate_limits.set("openai", 100, "1s", burst=5)
    assert app.rate_limits.get("openai") == changed and changed.period == 1
    assert app.rate_limits.delete("openai") is True
    assert app.rate_limits.delete("openai") is False
    with pytest.raises(UnknownRateLimit, match="no rate limit named 'openai'"):
        app.rate_limits.get("openai")
    assert [lim.name for lim in app.rate_limits.list()] == ["tokens"]


@pytest.mark.parametrize(("args", "message"), [
    (("", 1, 1), "name must be"),
    (("a b", 1, 1), "name must be"),
    (("x", 0, 1), "limit .* more than 0"),
    (("x", -5, 1), "limit .* more than 0"),
    (("x", float("nan"), 1), "limit"),
    (("x", True, 1), "limit"),
    (("x", 10, 0), "period must be more than 0"),
    (("x", 10, "soon"), "period must be seconds"),
    (("x", 10, float("inf")), "period must be more than 0"),
    (("x", 10, 1, 0.5), "burst .* at least 1"),
    (("x", 10, 1, "3"), "burst"),
])
def test_bad_limits_are_refused_clearly(app: Tether, args: tuple[object, ...],
                                        message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.rate_limits.set(*args)  # type: ignore[arg-type]
    assert app.rate_limits.list() == []


def test_acquire_takes_at_once_then_parks_the_run_and_frees_its_slot(
        app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("slow", 1, "1m")
    order: list[str] = []

    @app.task(queue="one")
    async def caller(payload: None, ctx: Context) -> int:
        await ctx.acquire("slow")
        await ctx.step("first", order.append, "first")
        await ctx.acquire("slow")  # the next unit comes 60 s later: the run parks
        await ctx.step("second", order.append, "second")
        return ctx.attempt

    @app.task(queue="one")
    async def other(payload: None, ctx: Context) -> str:
        order.append("other")
        return "ok"

    handle = caller.trigger()
    worker = Worker(app, concurrency=1)
    drain(worker)
    parked = record(app, handle.id)
    assert parked.status == RunStatus.WAITING
    assert parked.available_at == pytest.approx(clock.now() + 60)
    assert not worker.running  # the slot is free: another run goes on meanwhile
    done = other.trigger()
    drain(worker)
    assert app.runs.retrieve(done.id).status == RunStatus.COMPLETED
    assert order == ["first", "other"]

    report = app.check_replay()  # the parked run replays on this code up to its wait
    assert report.passed and report.count("ok") == 1

    clock.advance(60)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == 1 and run.attempts == 1
    assert order == ["first", "other", "second"]  # the first step did not run again
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "COMPLETED"]
    kinds = [(s.key, s.kind) for s in app.storage.load_steps(handle.id).values()]
    assert ("acquire:slow", "acquire") in kinds and ("acquire:slow#2", "acquire") in kinds
    labels = [span_label(e) for e in app.runs.trace(handle.id) if e.data.get("kind") == "acquire"]
    assert labels == ["acquire slow", "acquire slow"]


def test_a_completed_step_does_not_take_again_on_replay(app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("rare", 1, 10_000)
    calls: list[int] = []

    @app.task
    async def rated(payload: None, ctx: Context) -> int:
        value = await ctx.step("ask", lambda: calls.append(1) or len(calls), rate_limit="rare")
        await ctx.sleep(3600)  # parks; the replay after it returns the step's stored result
        return int(value)

    handle = rated.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING
    clock.advance(3600)  # the limit has no unit before START + 10,000: a take would park
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == 1 and calls == [1]


def test_a_step_waits_for_its_limit_durably(app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("api", 1, 30)
    calls: list[float] = []

    @app.task
    def sync_task(payload: None, ctx: SyncContext) -> int:
        for n in range(2):
            ctx.step("call", lambda: calls.append(clock.now()), rate_limit="api")
            del n
        return len(calls)

    handle = sync_task.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING and len(calls) == 1
    clock.advance(30)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == 2
    assert calls[1] - calls[0] >= 30


def test_a_short_wait_stays_in_process(app: Tether, clock: ManualClock) -> None:
    # 10 per second: the second unit is 0.1 s away, reserved and waited for in process
    app.rate_limits.set("fast", 10, 1)

    @app.task
    async def quick(payload: None, ctx: Context) -> str:
        await ctx.acquire("fast")
        await ctx.acquire("fast")
        return "done"

    handle = quick.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    assert attempt_outcomes(app, handle.id) == ["COMPLETED"]  # never parked
    assert INLINE_WAIT >= 0.1


def test_weighted_takes_and_their_errors(app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("tokens", 1000, 60, burst=1000)

    @app.task(retry=ONCE)
    async def weighted(payload: dict[str, object], ctx: Context) -> str:
        await ctx.acquire(str(payload["name"]), weight=payload["weight"])  # type: ignore[arg-type]
        return "ok"

    ok = weighted.trigger({"name": "tokens", "weight": 600})
    parks = weighted.trigger({"name": "tokens", "weight": 600})  # 400 left: 200 more come in 12 s
    too_big = weighted.trigger({"name": "tokens", "weight": 1001})
    unknown = weighted.trigger({"name": "nope", "weight": 1})
    bad = weighted.trigger({"name": "tokens", "weight": -1})
    drain(Worker(app))
    assert app.runs.retrieve(ok.id).status == RunStatus.COMPLETED
    waiting = record(app, parks.id)
    assert waiting.status == RunStatus.WAITING
    assert waiting.available_at == pytest.approx(clock.now() + 12)
    errors = {h.id: app.runs.retrieve(h.id) for h in (too_big, unknown, bad)}
    assert all(r.status == RunStatus.FAILED for r in errors.values())
    assert "burst is 1000" in errors[too_big.id].error["message"]  # type: ignore[index]
    assert "no rate limit named 'nope'" in errors[unknown.id].error["message"]  # type: ignore[index]
    assert "weight must be a number more than 0" in errors[bad.id].error["message"]  # type: ignore[index]
    clock.advance(12)
    drain(Worker(app))
    assert app.runs.retrieve(parks.id).status == RunStatus.COMPLETED


def test_the_replay_check_names_a_moved_acquire(app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("slow", 1, "1m")
    moved = {"yes": False}

    @app.task
    async def caller(payload: None, ctx: Context) -> None:
        if moved["yes"]:
            await ctx.step("first", lambda: None)
        await ctx.acquire("slow")
        await ctx.acquire("slow")

    caller.trigger()
    drain(Worker(app))
    moved["yes"] = True  # the code changed under the parked run: a step before the acquire
    [check] = app.check_replay().runs
    assert check.verdict == "would_fail"
    assert 'stored acquire "slow"' in (check.detail or "")


def test_sync_tasks_acquire_the_same_way(app: Tether, clock: ManualClock) -> None:
    app.rate_limits.set("api", 2, "1m", burst=2)

    @app.task
    def sync_caller(payload: None, ctx: SyncContext) -> int:
        ctx.acquire("api", weight=2)  # the whole burst at once
        ctx.acquire("api")  # 30 s away: parks
        return ctx.attempt

    handle = sync_caller.trigger()
    worker = Worker(app)
    drain(worker)
    parked = record(app, handle.id)
    assert parked.status == RunStatus.WAITING
    assert parked.available_at == pytest.approx(clock.now() + 30)
    clock.advance(30)
    drain(worker)
    assert app.runs.retrieve(handle.id).output == 1
