"""The run of the trace tests, for a real `tether worker`: a retry, three steps, a sleep that
parks and a child awaited."""

from __future__ import annotations

from typing import Any

from tether import Context, Retry, Tether

app = Tether(inline_sleep=0.1)


@app.task(id="child")
async def child(payload: Any, ctx: Context) -> int:
    return int(await ctx.step("inner", lambda: payload * 2))


@app.task(id="flaky", retry=Retry(max_attempts=2, min_delay=0.1, jitter=False))
async def flaky(payload: Any, ctx: Context) -> int:
    one = await ctx.step("one", lambda: 1)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    two = await ctx.step("two", lambda: 2)
    await ctx.sleep(0.5)
    three = await ctx.step("three", lambda: 3)
    doubled = await ctx.trigger_and_wait(child, 5)
    return int(one + two + three + doubled)
