"""`app.runs`: cancel, replay, retry and reschedule, seen through a real worker."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    AbortRun,
    ConfigurationError,
    Context,
    InvalidTransition,
    ManualClock,
    Retry,
    RunNotFound,
    RunStatus,
    Tether,
    Worker,
)


def test_cancel_a_queued_run(app: Tether) -> None:
    calls: list[Any] = []

    @app.task
    async def job(payload: Any) -> None:
        calls.append(payload)

    handle = job.trigger(1)
    run = app.runs.cancel(handle.id, reason="changed my mind")
    assert run.status == RunStatus.CANCELED and run.finished_at is not None
    assert drain(Worker(app)) == 0 and calls == []
    with pytest.raises(InvalidTransition, match="already ended CANCELED"):
        app.runs.cancel(handle.id)
    reasons = [e.data.get("reason") for e in app.runs.trace(handle.id) if e.name == "CANCELED"]
    assert reasons == ["changed my mind"]


def test_cancel_an_executing_run_stops_it_at_its_next_step(app: Tether) -> None:
    calls: list[str] = []

    @app.task
    async def long_job(payload: Any, ctx: Context) -> str:
        await ctx.step("first", lambda: calls.append("first") or app.runs.cancel(ctx.run_id))
        await ctx.step("second", lambda: calls.append("second"))
        return "finished"

    handle = long_job.trigger(None)
    assert drain(Worker(app)) == 1
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.CANCELED and run.output is None
    assert calls == ["first"]
    assert app.storage.load_steps(handle.id) == {}  # the fenced-out step result was not stored
    assert attempt_outcomes(app, handle.id) == ["CANCELED"]


def test_cancel_a_finished_run_is_refused(app: Tether) -> None:
    @app.task
    async def quick(payload: Any) -> int:
        return 1

    handle = quick.trigger(None)
    drain(Worker(app))
    with pytest.raises(InvalidTransition):
        app.runs.cancel(handle.id)
    assert handle.status() == RunStatus.COMPLETED


def test_replay_makes_a_new_run_with_the_same_options(app: Tether) -> None:
    @app.task
    async def echo(payload: Any) -> Any:
        return payload

    first = echo.trigger({"k": 1}, tags=["a"], metadata={"m": 1}, priority=4,
                         concurrency_key="c", max_attempts=2, idempotency_key="once")
    drain(Worker(app))
    replay = app.runs.replay(first.id)
    assert replay.id != first.id
    run = replay.retrieve()
    assert (run.payload, run.tags, run.metadata, run.priority, run.concurrency_key,
            run.max_attempts) == ({"k": 1}, ["a"], {"m": 1}, 4, "c", 2)
    assert run.status == RunStatus.QUEUED and run.idempotency_key is None
    drain(Worker(app))
    assert replay.retrieve().output == {"k": 1}
    with pytest.raises(RunNotFound):
        app.runs.replay("run_missing")


def test_retry_reopens_a_failed_run_and_keeps_its_steps(app: Tether) -> None:
    calls: list[str] = []
    broken = [True]

    @app.task(retry=Retry(max_attempts=1))
    async def pipeline(payload: Any, ctx: Context) -> str:
        data = await ctx.step("load", lambda: calls.append("load") or "data")
        if broken[0]:
            raise RuntimeError("bug in transform")
        return f"{data}!"

    handle = pipeline.trigger(None)
    worker = Worker(app)
    drain(worker)
    assert handle.status() == RunStatus.FAILED
    waiting = pipeline.trigger(None, delay=3600)
    with pytest.raises(InvalidTransition, match="only FAILED, TIMED_OUT or CANCELED"):
        app.runs.retry(waiting.id)
    broken[0] = False  # "fix the bug, deploy"
    reopened = app.runs.retry(handle.id)
    assert reopened.status == RunStatus.QUEUED and reopened.max_attempts == 2
    drain(worker)
    run = app.runs.retrieve(handle.id)
    assert (run.status, run.output, run.attempts) == (RunStatus.COMPLETED, "data!", 2)
    assert calls == ["load"]  # the retry resumed from the stored step
    assert [r.id for r in app.runs.list(status="completed")] == [handle.id]


def test_retry_of_a_completed_run_is_refused(app: Tether) -> None:
    @app.task
    async def quick(payload: Any) -> int:
        return 1

    handle = quick.trigger(None)
    drain(Worker(app))
    with pytest.raises(InvalidTransition):
        app.runs.retry(handle.id)


def test_retry_an_aborted_run(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=3))
    async def picky(payload: Any, ctx: Context) -> int:
        if ctx.attempt == 1:
            raise AbortRun("needs a person")
        return ctx.attempt

    handle = picky.trigger(None)
    drain(Worker(app))
    assert handle.status() == RunStatus.FAILED
    app.runs.retry(handle.id)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == 2


def test_reschedule_a_delayed_run(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def later(payload: Any) -> str:
        return "ran"

    handle = later.trigger(None, delay=60)
    run = app.runs.reschedule(handle.id, delay="10m")
    assert run.status == RunStatus.DELAYED
    assert record(app, handle.id).available_at == clock.now() + 600
    worker = Worker(app)
    clock.advance(60)
    assert drain(worker) == 0  # the old time no longer applies
    clock.advance(540)
    assert drain(worker) == 1
    assert handle.status() == RunStatus.COMPLETED


def test_reschedule_only_applies_to_delayed_runs(app: Tether) -> None:
    @app.task
    async def now(payload: Any) -> None: ...

    handle = now.trigger(None)
    with pytest.raises(InvalidTransition, match="only DELAYED runs reschedule"):
        app.runs.reschedule(handle.id, delay=5)
    assert handle.status() == RunStatus.QUEUED


def test_unknown_run_id(app: Tether) -> None:
    with pytest.raises(RunNotFound, match="run_nope"):
        app.runs.retrieve("run_nope")
    with pytest.raises(RunNotFound):
        app.runs.cancel("run_nope")


def test_replay_with_a_new_payload_and_options(app: Tether) -> None:
    @app.task
    async def echo(payload: Any) -> Any:
        return payload

    first = echo.trigger({"k": 1}, tags=["a"], metadata={"m": 1})
    run = app.runs.replay(first.id, {"k": 2}, tags=["b"], delay="1h").retrieve()
    assert (run.payload, run.tags, run.metadata, run.status) == ({"k": 2}, ["b"], {"m": 1},
                                                                 RunStatus.DELAYED)
    with pytest.raises(ConfigurationError):
        app.runs.replay(first.id, nonsense=1)
