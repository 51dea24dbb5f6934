"""A property of gathers (several waits at once): whatever the mix of sleeps, tokens (completed
or timing out) and child runs, and whatever their times, the run parks once, resumes once at
the moment the last of them is over, and gets every result in call order. SQLite, a manual
clock, Hypothesis choosing the waits."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from engine_helpers import attempt_outcomes, drain, record
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tether import Context, ManualClock, RunStatus, SyncContext, Tether, WaitTimeout, Worker

START = 1_000_000.0
HORIZON = 7  # seconds the test walks, one at a time

# ("sleep", seconds) | ("token", completed at or None, timeout or None) | ("child", seconds)
sleeps = st.tuples(st.just("sleep"), st.integers(1, 5))
tokens = st.tuples(st.just("token"), st.none() | st.integers(0, 5),
                   st.none() | st.integers(1, 6)).filter(lambda t: t[1] is not None
                                                         or t[2] is not None)
children = st.tuples(st.just("child"), st.integers(0, 5))
waits = st.lists(st.one_of(sleeps, tokens, children), min_size=2, max_size=4)


def over_at(wait: tuple[Any, ...]) -> int:
    """When the wait is over, in seconds from the start."""
    if wait[0] == "token":
        completed, timeout = wait[1], wait[2]
        if completed is not None and (timeout is None or completed < timeout):
            return int(completed)
        return int(timeout)
    return int(wait[1])


def expected(wait: tuple[Any, ...], n: int) -> Any:
    if wait[0] == "sleep":
        return None
    if wait[0] == "child":
        return f"child {wait[1]}"
    completed, timeout = wait[1], wait[2]
    return f"data {n}" if completed is not None and (timeout is None or completed < timeout) \
        else "timed out"


async def token_wait(ctx: Context, token: Any) -> Any:
    try:
        return await ctx.wait_for_token(token)
    except WaitTimeout:
        return "timed out"


def sync_token_wait(ctx: SyncContext, token: Any) -> Any:
    try:
        return ctx.wait_for_token(token)
    except WaitTimeout:
        return "timed out"


def async_call(ctx: Context, child: Any, wait: tuple[Any, ...], token: Any) -> Any:
    if wait[0] == "sleep":
        return ctx.sleep(wait[1])
    if wait[0] == "child":
        return ctx.trigger_and_wait(child, wait[1])
    return token_wait(ctx, token)


def sync_call(ctx: SyncContext, child: Any, wait: tuple[Any, ...], token: Any) -> Any:
    if wait[0] == "sleep":
        return lambda: ctx.sleep(wait[1])
    if wait[0] == "child":
        return lambda: ctx.trigger_and_wait(child, wait[1])
    return lambda: sync_token_wait(ctx, token)


def build(app: Tether, plan: list[tuple[Any, ...]]) -> tuple[Any, Any]:
    @app.task
    async def child(seconds: int, ctx: Context) -> str:
        if seconds:
            await ctx.sleep(seconds)
        return f"child {seconds}"

    @app.task
    async def gathered(payload: None, ctx: Context) -> list[Any]:
        tokens = [await ctx.create_token(timeout=w[2]) if w[0] == "token" else None
                  for w in plan]
        ctx.metadata["tokens"] = [t.id if t else None for t in tokens]
        return list(await asyncio.gather(*(async_call(ctx, child, w, t)
                                           for w, t in zip(plan, tokens, strict=True))))

    @app.task
    def in_parallel(payload: None, ctx: SyncContext) -> list[Any]:
        tokens = [ctx.create_token(timeout=w[2]) if w[0] == "token" else None for w in plan]
        ctx.metadata["tokens"] = [t.id if t else None for t in tokens]
        return ctx.parallel(*(sync_call(ctx, child, w, t)
                              for w, t in zip(plan, tokens, strict=True)))

    return gathered, in_parallel


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=waits, sync=st.booleans())
def test_a_gather_resumes_once_when_the_last_wait_is_over(plan: list[tuple[Any, ...]],
                                                          sync: bool) -> None:
    last = max(over_at(w) for w in plan)
    assume(last >= 1)  # something to wait for when the run parks
    with tempfile.TemporaryDirectory() as directory:
        clock = ManualClock(START)
        app = Tether(f"sqlite:///{Path(directory) / 'db.sqlite'}", clock=clock, inline_sleep=0)
        try:
            gathered, in_parallel = build(app, plan)
            handle = (in_parallel if sync else gathered).trigger()
            worker = Worker(app)
            drain(worker)
            ids: list[str | None] = []
            for second in range(HORIZON):
                if second:
                    clock.advance(1)
                if not ids:
                    ids = json.loads(record(app, handle.id).metadata)["tokens"]
                for n, w in enumerate(plan):
                    if w[0] == "token" and w[1] == second and (w[2] is None or second < w[2]):
                        token_id = ids[n]
                        assert token_id is not None
                        app.tokens.complete(token_id, f"data {n}")
                drain(worker)
                status = record(app, handle.id).status
                if second < last:
                    assert status == RunStatus.WAITING, (second, plan)
                else:
                    assert status == RunStatus.COMPLETED, (second, plan,
                                                           app.runs.retrieve(handle.id).error)
                    break
            run = app.runs.retrieve(handle.id)
            assert run.output == [expected(w, n) for n, w in enumerate(plan)]
            assert attempt_outcomes(app, handle.id) == ["SUSPENDED", "COMPLETED"]
        finally:
            app.close()
