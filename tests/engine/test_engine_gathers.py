"""Several durable waits at once (engine/gathering.py, migration 0021): `asyncio.gather` of ctx
waits and `SyncContext.parallel` park the run once and resume it once, when all are done, with
the results in call order; on both backends, with an injected clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    Context,
    ManualClock,
    Retry,
    RunStatus,
    SyncContext,
    Tether,
    WaitTimeout,
    Worker,
)
from tether.engine.waits import NEVER
from tether.errors import TokenRunEnded

START = 1_000_000.0


@pytest.fixture
def app(db_url: str, clock: ManualClock) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock, inline_sleep=0)  # every sleep parks
    yield app
    app.close()


def resumes(app: Tether, run_id: str) -> int:
    """How many times the run left WAITING for the queue."""
    return sum(1 for e in app.storage.list_events(run_id)
               if e.kind == "status" and e.name == "QUEUED"
               and json.loads(e.data).get("from") == "WAITING")


def token_of(app: Tether, run_id: str) -> str:
    token: str = json.loads(record(app, run_id).metadata)["token"]
    return token


def define(app: Tether, calls: list[str]) -> tuple[Any, Any, Any]:
    @app.task
    async def child(seconds: float, ctx: Context) -> str:
        await ctx.sleep(seconds)
        return f"child slept {seconds:g}s"

    @app.task
    async def fan(payload: None, ctx: Context) -> list[Any]:
        token = await ctx.create_token(timeout="1h")
        ctx.metadata["token"] = token.id

        async def work() -> str:
            calls.append("work")
            await asyncio.sleep(0.01)
            return "worked"

        return list(await asyncio.gather(
            ctx.trigger_and_wait(child, 1), ctx.sleep(2), ctx.wait_for_token(token),
            ctx.step("work", work)))

    @app.task
    def fan_sync(payload: None, ctx: SyncContext) -> list[Any]:
        token = ctx.create_token(timeout="1h")
        ctx.metadata["token"] = token.id
        return ctx.parallel(lambda: ctx.trigger_and_wait(child, 1), lambda: ctx.sleep(2),
                            lambda: ctx.wait_for_token(token),
                            lambda: ctx.step("work", lambda: calls.append("work") or "worked"))

    return child, fan, fan_sync


@pytest.mark.parametrize("flavour", ["async", "sync"])
def test_a_child_a_sleep_and_a_token_resume_the_run_once(app: Tether, clock: ManualClock,
                                                        flavour: str) -> None:
    calls: list[str] = []
    _, fan, fan_sync = define(app, calls)
    handle = (fan if flavour == "async" else fan_sync).trigger()
    worker = Worker(app)
    drain(worker)
    parked = record(app, handle.id)
    assert parked.status == RunStatus.WAITING
    assert parked.waiting_for is not None and parked.waiting_for.startswith("gather_")
    assert parked.available_at >= NEVER  # the token and the child end it, not the time
    token = token_of(app, handle.id)

    clock.advance(1)  # the child's sleep is over: it ends; the run still waits for the token
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING
    assert record(app, handle.id).available_at == pytest.approx(START + 3600)  # its timeout

    clock.advance(0.5)
    app.tokens.complete(token, {"ok": 1})
    waiting = record(app, handle.id)
    assert waiting.status == RunStatus.WAITING  # the sleep is not over
    assert waiting.available_at == pytest.approx(START + 2)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING

    clock.advance(0.5)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == ["child slept 1s", None, {"ok": 1}, "worked"]
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "COMPLETED"]
    assert resumes(app, handle.id) == 1
    assert calls == ["work"]  # the step ran once
    # positions in call order: token, child, sleep, token wait, step
    steps = sorted(app.storage.load_steps(handle.id).values(), key=lambda s: s.seq or 0)
    assert [s.kind for s in steps] == ["token", "trigger_wait", "sleep", "wait_token", "step"]


def test_replay_after_the_resume_returns_the_same_values_without_waiting(
        app: Tether, clock: ManualClock) -> None:
    calls: list[str] = []
    _, fan, _ = define(app, calls)
    failures = [1]

    @app.task(retry=Retry(max_attempts=2, min_delay=0, max_delay=0))
    async def then_fail_once(payload: None, ctx: Context) -> list[Any]:
        results: list[Any] = await fan.fn(payload, ctx)
        if failures:
            failures.pop()
            raise RuntimeError("once")
        return results

    handle = then_fail_once.trigger()
    worker = Worker(app)
    drain(worker)
    clock.advance(1)
    drain(worker)
    app.tokens.complete(token_of(app, handle.id), "yes")
    clock.advance(1)
    drain(worker)  # resumed, failed once, retried: the retry replays the gather at once
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == ["child slept 1s", None, "yes", "worked"]
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "FAILED", "COMPLETED"]
    assert resumes(app, handle.id) == 1 and calls == ["work"]


def test_a_token_that_times_out_raises_in_the_gather(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def impatient(payload: None, ctx: Context) -> str:
        token = await ctx.create_token(timeout=1)
        try:
            await asyncio.gather(ctx.sleep(2), ctx.wait_for_token(token))
        except WaitTimeout as exc:
            return f"timed out: {exc.token_id == token.id}"
        return "answered"

    handle = impatient.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).available_at == pytest.approx(START + 2)
    clock.advance(1)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING  # the sleep is not over
    clock.advance(1)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.output == "timed out: True", run.error
    assert resumes(app, handle.id) == 1


def test_several_waits_of_one_kind(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def square(n: int, ctx: Context) -> int:
        await ctx.sleep(n)
        return n * n

    @app.task
    async def many(payload: None, ctx: Context) -> list[Any]:
        tokens = [await ctx.create_token() for _ in range(2)]
        ctx.metadata["tokens"] = [t.id for t in tokens]
        return list(await asyncio.gather(
            *(ctx.trigger_and_wait(square, n) for n in (3, 1, 2)),
            *(ctx.wait_for_token(t) for t in tokens)))

    handle = many.trigger()
    worker = Worker(app)
    drain(worker)
    first, second = json.loads(record(app, handle.id).metadata)["tokens"]
    app.tokens.complete(second, "b")
    for _ in range(3):
        clock.advance(1)
        drain(worker)
        assert record(app, handle.id).status == RunStatus.WAITING
    app.tokens.complete(first, "a")
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.output == [9, 1, 4, "a", "b"], run.error
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "COMPLETED"]
    assert resumes(app, handle.id) == 1


def test_what_is_done_before_the_gather_parks_is_not_waited_for(
        app: Tether, clock: ManualClock) -> None:
    @app.task
    async def quick(payload: None, ctx: Context) -> str:
        return "quick"

    @app.task
    async def late(payload: None, ctx: Context) -> list[Any]:
        token = await ctx.create_token()
        ctx.metadata["token"] = token.id
        await ctx.step("publish", lambda: token.id)
        app.tokens.complete(token.id, "early")  # completed before the wait is even reached
        return list(await asyncio.gather(ctx.wait_for_token(token), ctx.sleep(5),
                                         ctx.trigger_and_wait(quick)))

    handle = late.trigger()
    worker = Worker(app)
    drain(worker)  # the child ran too: only the sleep is left
    parked = record(app, handle.id)
    assert parked.status == RunStatus.WAITING
    assert parked.available_at == pytest.approx(START + 5)
    clock.advance(5)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.output == ["early", None, "quick"], run.error
    assert resumes(app, handle.id) == 1


def test_a_single_wait_still_parks_alone(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def nap(payload: None, ctx: Context) -> str:
        await ctx.sleep(10)
        return "ok"

    handle = nap.trigger()
    drain(Worker(app))
    assert record(app, handle.id).waiting_for == "sleep"  # the plain path, no gather


def test_parallel_needs_callables(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    def wrong(payload: None, ctx: SyncContext) -> Any:
        return ctx.parallel(lambda: 1, 42)  # type: ignore[arg-type]

    bad = wrong.trigger()
    drain(Worker(app))
    run = app.runs.retrieve(bad.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "argument 2 is int" in run.error["message"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
def test_a_parked_gather_replays_in_the_replay_check(app: Tether, clock: ManualClock,
                                                     flavour: str) -> None:
    _, fan, fan_sync = define(app, [])
    task = fan if flavour == "async" else fan_sync
    handle = task.trigger()
    drain(Worker(app))
    assert record(app, handle.id).status == RunStatus.WAITING
    report = app.check_replay(task=task.id)
    [run] = report.runs
    assert (run.run_id, run.verdict) == (handle.id, "ok"), run.detail
    assert record(app, handle.id).status == RunStatus.WAITING  # nothing written


def test_a_wait_inside_a_step_parks_alone_or_with_the_gather(app: Tether,
                                                             clock: ManualClock) -> None:
    """A step whose function itself waits (as an agent's tool may) is not work in flight that
    the waits must outlast: it ends only after the resume (no deadlock)."""
    async def sleepy(ctx: Context) -> str:
        await ctx.sleep(3)
        return "slept inside"

    @app.task
    async def alone(payload: None, ctx: Context) -> str:
        result: str = await ctx.step("alone", sleepy, ctx)
        return result

    @app.task
    async def gathered(payload: None, ctx: Context) -> list[Any]:
        return list(await asyncio.gather(ctx.step("gathered", sleepy, ctx),
                                         ctx.sleep(5, name="beside")))

    first, second = alone.trigger(), gathered.trigger()
    worker = Worker(app)

    def bounded() -> None:
        asyncio.run(asyncio.wait_for(worker.run_until_idle(), 10))

    bounded()
    assert record(app, first.id).waiting_for == "sleep"  # alone: parked at once, as before
    parked = record(app, second.id)
    assert parked.waiting_for is not None and parked.waiting_for.startswith("gather_")
    assert parked.available_at == pytest.approx(START + 5)
    clock.advance(5)
    bounded()
    assert app.runs.retrieve(first.id).output == "slept inside"
    run = app.runs.retrieve(second.id)
    assert run.output == ["slept inside", None], run.error
    assert attempt_outcomes(app, second.id) == ["SUSPENDED", "COMPLETED"]


def test_a_token_a_gather_waits_for_can_be_completed_after_its_run_ended(
        app: Tether, clock: ManualClock) -> None:
    @app.task
    async def maker(payload: None, ctx: Context) -> str:
        return (await ctx.create_token()).id

    @app.task
    async def waiter(payload: dict[str, str], ctx: Context) -> list[Any]:
        return list(await asyncio.gather(ctx.wait_for_token(payload["token"]), ctx.sleep(1)))

    made = maker.trigger()
    worker = Worker(app)
    drain(worker)
    token_id = app.runs.retrieve(made.id).output
    other = waiter.trigger({"token": token_id})
    drain(worker)
    assert app.tokens.retrieve(token_id).run_ended == RunStatus.COMPLETED
    assert app.storage.gather_waits_for(token_id)
    app.tokens.complete(token_id, 7)  # not TokenRunEnded: the gather waits for it
    assert not app.storage.gather_waits_for(token_id)
    clock.advance(1)
    drain(worker)
    assert app.runs.retrieve(other.id).output == [7, None]


@pytest.mark.parametrize("style", ["task_group", "return_exceptions"])
def test_task_groups_and_gathers_that_return_exceptions(app: Tether, clock: ManualClock,
                                                        style: str) -> None:
    after: list[Any] = []

    @app.task
    async def grouped(payload: None, ctx: Context) -> list[Any]:
        token = await ctx.create_token()
        ctx.metadata["token"] = token.id
        if style == "task_group":
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(ctx.sleep(2)),
                         group.create_task(ctx.wait_for_token(token))]
            results = [t.result() for t in tasks]
        else:  # the run parks all the same; nothing durable runs after the park
            results = list(await asyncio.gather(ctx.sleep(2), ctx.wait_for_token(token),
                                                return_exceptions=True))
        await ctx.step("after", lambda: after.append(list(results)))
        return results

    handle = grouped.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).status == RunStatus.WAITING and after == []
    app.tokens.complete(token_of(app, handle.id), "t")
    clock.advance(2)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.output == [None, "t"], run.error
    assert after == [[None, "t"]]  # the step after the gather ran once, after the resume
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "COMPLETED"]


def test_a_canceled_gather_leaves_its_token_resuming_nothing(app: Tether) -> None:
    @app.task
    async def both(payload: None, ctx: Context) -> list[Any]:
        token = await ctx.create_token()
        ctx.metadata["token"] = token.id
        return list(await asyncio.gather(ctx.sleep(60), ctx.wait_for_token(token)))

    handle = both.trigger()
    drain(Worker(app))
    token = token_of(app, handle.id)
    app.runs.cancel(handle.id)
    assert record(app, handle.id).status == RunStatus.CANCELED
    assert not app.storage.gather_waits_for(token)
    with pytest.raises(TokenRunEnded):
        app.tokens.complete(token, 1)


def test_one_wait_in_a_task_of_its_own_parks_as_a_single_wait(app: Tether,
                                                             clock: ManualClock) -> None:
    @app.task
    async def tasked(payload: None, ctx: Context) -> str:
        await asyncio.create_task(ctx.sleep(30))
        results = await asyncio.gather(ctx.sleep(10, name="nap"), return_exceptions=True)
        await ctx.step("after", lambda: None)
        return f"{results}"

    handle = tasked.trigger()
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).waiting_for == "sleep"  # the plain path, its row stored
    assert app.storage.load_steps(handle.id)["sleep"].status == "WAITING"
    clock.advance(30)
    drain(worker)
    parked = record(app, handle.id)  # the sleep in a gather that returns exceptions: the same
    assert parked.waiting_for == "sleep" and parked.available_at == pytest.approx(START + 40)
    assert app.storage.load_steps(handle.id)["nap"].status == "WAITING"
    clock.advance(10)
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.output == "[None]", run.error
    assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "SUSPENDED", "COMPLETED"]
