"""Retries (issue requirement): a task failing twice then succeeding completes on attempt 3, the
delays follow the policy (by an injected clock, not by sleeping), and AbortRun stops at attempt 1."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    AbortRun,
    ConfigurationError,
    Context,
    ManualClock,
    Retry,
    RunFailed,
    RunStatus,
    SyncContext,
    Tether,
    Worker,
)

POLICY = Retry(max_attempts=3, min_delay=2.0, factor=3.0, max_delay=100.0, jitter=False)


def test_fails_twice_then_completes_on_attempt_3(app: Tether, clock: ManualClock) -> None:
    calls: list[tuple[int, float]] = []

    @app.task(retry=POLICY)
    async def flaky(payload: Any, ctx: Context) -> dict[str, int]:
        calls.append((ctx.attempt, clock.now()))
        if ctx.attempt < 3:
            raise ValueError(f"boom {ctx.attempt}")
        return {"attempt": ctx.attempt}

    handle = flaky.trigger({"x": 1})
    worker = Worker(app)
    t1 = clock.now()

    assert drain(worker) == 1
    first = record(app, handle.id)
    assert first.status == RunStatus.QUEUED
    assert first.available_at == t1 + 2.0  # min_delay * factor**0
    assert "boom 1" in (first.error or "")

    clock.set(t1 + 2.0 - 0.001)
    assert drain(worker) == 0, "nothing runs before the delay passed"
    clock.set(t1 + 2.0)
    assert drain(worker) == 1
    t2 = clock.now()
    second = record(app, handle.id)
    assert second.status == RunStatus.QUEUED
    assert second.available_at == t2 + 6.0  # min_delay * factor**1

    clock.set(t2 + 6.0 - 0.001)
    assert drain(worker) == 0
    clock.set(t2 + 6.0)
    assert drain(worker) == 1

    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"attempt": 3}
    assert run.attempts == 3 and run.error is None
    assert calls == [(1, t1), (2, t1 + 2.0), (3, t2 + 6.0)]
    assert attempt_outcomes(app, handle.id) == ["FAILED", "FAILED", "COMPLETED"]


def test_delay_is_capped_by_max_delay(app: Tether, clock: ManualClock) -> None:
    @app.task(retry=Retry(max_attempts=5, min_delay=10.0, factor=10.0, max_delay=50.0, jitter=False))
    async def always(payload: Any) -> None:
        raise RuntimeError("no")

    handle = always.trigger(None)
    worker = Worker(app)
    drain(worker)
    assert record(app, handle.id).available_at == clock.now() + 10.0
    clock.advance(10.0)
    drain(worker)
    assert record(app, handle.id).available_at == clock.now() + 50.0  # not 100


def test_attempts_exhausted_fails_with_the_last_error(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=2, min_delay=0.0, max_delay=0.0))
    def broken(payload: Any) -> None:
        raise KeyError("missing")

    handle = broken.trigger(None)
    assert drain(Worker(app)) == 2
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 2
    assert run.error is not None
    assert run.error["type"] == "KeyError" and "missing" in run.error["message"]
    assert "Traceback" in run.error["traceback"]
    assert attempt_outcomes(app, handle.id) == ["FAILED", "FAILED"]


def test_abort_run_stops_at_attempt_1(app: Tether, clock: ManualClock) -> None:
    calls: list[int] = []

    @app.task(retry=Retry(max_attempts=5, min_delay=0.0, max_delay=0.0))
    async def picky(payload: Any, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise AbortRun("bad input, do not retry")

    handle = picky.trigger(None)
    worker = Worker(app)
    assert drain(worker) == 1
    clock.advance(3600)
    assert drain(worker) == 0
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED
    assert run.attempts == 1 and calls == [1]
    assert run.error is not None and run.error["message"] == "bad input, do not retry"
    assert run.error["type"] == "tether.errors.AbortRun"
    assert attempt_outcomes(app, handle.id) == ["FAILED"]


def test_max_attempts_trigger_option_overrides_the_policy(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=5, min_delay=0.0, max_delay=0.0))
    async def nope(payload: Any) -> None:
        raise ValueError("x")

    handle = nope.trigger(None, max_attempts=1)
    assert drain(Worker(app)) == 1
    assert app.runs.retrieve(handle.id).status == RunStatus.FAILED


def test_on_success_and_on_failure_hooks(app: Tether) -> None:
    seen: list[tuple[str, Any, Any]] = []

    @app.task(on_success=lambda p, out, ctx: seen.append(("ok", p, out)))
    async def good(payload: Any) -> int:
        return payload * 2

    @app.task(retry=Retry(max_attempts=1), on_failure=lambda p, err, ctx: seen.append(
        ("failed", p, err["message"])))
    async def bad(payload: Any) -> None:
        raise ValueError("nope")

    good.trigger(21)
    bad.trigger(7)
    assert drain(Worker(app)) == 2
    assert sorted(seen) == [("failed", 7, "nope"), ("ok", 21, 42)]


def test_retry_claimed_as_the_attempt_ends_is_waited_for(app: Tether) -> None:
    # the worker claims the retry in the same transaction that ends attempt 1; the retry runs
    # under the same run id and must stay tracked until it finishes
    @app.task(retry=Retry(max_attempts=2, min_delay=0.0, max_delay=0.0))
    async def slow_second(payload: Any, ctx: Context) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first")
        await asyncio.sleep(0.05)
        return ctx.attempt

    handle = slow_second.trigger(None)
    worker = Worker(app)
    assert drain(worker) == 2
    assert worker.running == {}
    run = app.runs.retrieve(handle.id)
    assert (run.status, run.output) == (RunStatus.COMPLETED, 2)


def test_a_return_value_that_cannot_be_stored_fails_the_run_at_once(app: Tether) -> None:
    """Another attempt would return the same value: no retry, the message says why."""

    @app.task(retry=POLICY)
    async def returns_a_set(payload: Any) -> Any:
        return {1, 2}

    handle = returns_a_set.trigger({})
    assert drain(Worker(app)) == 1
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 1
    assert run.error is not None and "cannot be stored as JSON" in run.error["message"]
    assert attempt_outcomes(app, handle.id) == ["FAILED"]


def test_a_step_result_that_cannot_be_stored_fails_the_run_at_once(app: Tether) -> None:
    @app.task(retry=POLICY)
    def sync_task(payload: Any, ctx: SyncContext) -> Any:
        return ctx.step("make", lambda: object())

    handle = sync_task.trigger({})
    assert drain(Worker(app)) == 1
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 1
    assert run.error is not None and "result of step 'make'" in run.error["message"]


def test_failed_attempts_and_failed_runs_are_logged(app: Tether, clock: ManualClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    @app.task(retry=Retry(max_attempts=2, min_delay=5.0, jitter=False))
    async def broken(payload: Any) -> None:
        raise KeyError("timestamp")

    handle = broken.trigger({})
    worker = Worker(app)
    with caplog.at_level(logging.WARNING, logger="tether.worker"):
        assert drain(worker) == 1
        clock.advance(5.0)
        assert drain(worker) == 1
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tether.worker"]
    assert len(lines) == 2, lines
    (first_level, first), (last_level, last) = lines
    assert first_level == logging.WARNING
    assert f"run {handle.id} (task broken) attempt 1 of 2 failed: KeyError: 'timestamp'" in first
    assert re.search(r"; retrying at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", first), first
    assert last_level == logging.ERROR
    assert "attempt 2 of 2 failed: KeyError: 'timestamp'; the run ended FAILED" in last


def test_result_of_a_failed_run_names_the_exception_type(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def misread(payload: Any) -> None:
        raise KeyError("timestamp")

    handle = misread.trigger({})
    drain(Worker(app))
    with pytest.raises(RunFailed, match=r"ended FAILED: KeyError: 'timestamp'$"):
        handle.result(timeout=5)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_page_of_runs_or_tokens_outside_1_to_1000_is_a_clear_error(app: Tether,
                                                                     limit: int) -> None:
    with pytest.raises(ConfigurationError, match="limit must be a whole number from 1 to 1000"):
        app.runs.list(limit=limit)
    with pytest.raises(ConfigurationError, match="limit must be a whole number from 1 to 1000"):
        app.tokens.list(limit=limit)
