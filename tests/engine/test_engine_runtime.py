"""Time limits, sync (def) tasks, and crash recovery: resuming from checkpoints, `once` refusing
to run again after a crash inside it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from engine_helpers import attempt_outcomes, drain, record

from tether import Context, ManualClock, Retry, RunStatus, SyncContext, Tether, Worker
from tether.storage.records import ClaimedRun, StepRecord
from tether.worker.housekeeping import reap


def test_max_duration_times_out_and_is_not_retried(app: Tether) -> None:
    @app.task(max_duration=0.2, retry=Retry(max_attempts=3, min_delay=0.0, max_delay=0.0))
    async def slow(payload: Any) -> None:
        await asyncio.sleep(5)

    handle = slow.trigger(None)
    started = time.monotonic()
    assert drain(Worker(app)) == 1
    assert time.monotonic() - started < 3.0
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.TIMED_OUT and run.attempts == 1
    assert run.error is not None and run.error["message"] == "run exceeded max_duration of 0.2s"
    assert attempt_outcomes(app, handle.id) == ["TIMED_OUT"]


def test_own_timeout_error_is_an_ordinary_failure(app: Tether) -> None:
    @app.task(max_duration=60, retry=Retry(max_attempts=1))
    async def calls_api(payload: Any) -> None:
        raise TimeoutError("the API did not answer")

    handle = calls_api.trigger(None)
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["message"] == "the API did not answer"


def test_sync_task_runs_in_a_thread_with_a_sync_context(app: Tether) -> None:
    seen: dict[str, Any] = {}

    async def async_helper(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @app.task(retry=Retry(max_attempts=2, min_delay=0.0, max_delay=0.0))
    def crunch(payload: dict[str, int], ctx: SyncContext) -> dict[str, Any]:
        seen["ctx"] = type(ctx)
        seen["thread"] = threading.current_thread().name
        a = ctx.step("double", lambda: payload["n"] * 2)
        b = ctx.step("async", async_helper, a)  # async step functions work from sync tasks too
        ctx.metadata["done"] = True
        ctx.checkpoint({"a": a})
        if ctx.attempt == 1:
            raise RuntimeError("retry")
        return {"a": a, "b": b, "state": ctx.state, "run": ctx.run_id, "tags": ctx.tags}

    handle = crunch.trigger({"n": 5}, tags=["x"])
    assert drain(Worker(app)) == 2
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"a": 10, "b": 11, "state": {"a": 10}, "run": handle.id, "tags": ["x"]}
    assert run.metadata == {"done": True}
    assert seen["ctx"] is SyncContext
    assert seen["thread"] != threading.main_thread().name


def test_sync_task_without_ctx(app: Tether) -> None:
    @app.task
    def double(n: int) -> int:
        return n * 2

    handle = double.trigger(21)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == 42


def _claim_as_dead_worker(app: Tether, task_id: str) -> ClaimedRun:
    [claimed] = app.storage.claim_runs("worker_dead", [task_id], None, 1, app.clock.now(),
                                       app.lease_seconds)
    return claimed


def _crash(app: Tether, clock: ManualClock) -> None:
    """The dead worker's lease runs out; housekeeping closes its attempt as CRASHED."""
    clock.advance(app.lease_seconds + 1)
    assert reap(app.storage, clock.now(), []) == 1


def test_crashed_attempt_resumes_from_its_checkpoints(app: Tether, clock: ManualClock) -> None:
    calls: list[str] = []

    @app.task(retry=Retry(max_attempts=3, min_delay=0.0, max_delay=0.0))
    async def resumable(payload: Any, ctx: Context) -> list[Any]:
        a = await ctx.step("a", lambda: calls.append("a") or 1)
        b = await ctx.step("b", lambda: calls.append("b") or 2)
        return [a, b, ctx.attempt]

    handle = resumable.trigger(None)
    claimed = _claim_as_dead_worker(app, "resumable")
    now = clock.now()
    app.storage.save_step(claimed.lease, StepRecord("a", "a", "step", "COMPLETED", "1", None, 1,
                                                    now, now))
    _crash(app, clock)
    crashed = record(app, handle.id)
    assert crashed.status == RunStatus.QUEUED and crashed.lease_token is None
    assert drain(Worker(app)) == 1
    assert app.runs.retrieve(handle.id).output == [1, 2, 2]
    assert calls == ["b"]
    assert attempt_outcomes(app, handle.id) == ["CRASHED", "COMPLETED"]


def test_once_interrupted_by_a_crash_is_not_run_again(app: Tether, clock: ManualClock) -> None:
    charged: list[int] = []

    @app.task(retry=Retry(max_attempts=3, min_delay=0.0, max_delay=0.0))
    async def charge(payload: int, ctx: Context) -> str:
        await ctx.once("charge", lambda: charged.append(payload))
        return "charged"

    handle = charge.trigger(99)
    claimed = _claim_as_dead_worker(app, "charge")
    app.storage.save_step(claimed.lease, StepRecord("charge", "charge", "once", "STARTED", None, None,
                                                    1, clock.now(), None))
    _crash(app, clock)
    assert drain(Worker(app)) == 1
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 2  # not retried further
    assert run.error is not None and run.error["type"] == "tether.errors.OnceInterrupted"
    assert "'charge' started in an earlier attempt" in run.error["message"]
    assert charged == []
    # a person decides: retry re-arms the interrupted once step
    app.runs.retry(handle.id)
    assert drain(Worker(app)) == 1
    assert app.runs.retrieve(handle.id).output == "charged"
    assert charged == [99]
