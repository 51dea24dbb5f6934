"""Tasks for the retention tests. Retention comes from TETHER_RETENTION (the test starts one
worker without it and one with it). `full` stores every kind of row a run has: two attempts,
steps, a log line, a token it created, a child run; `holder` waits for a token after starting a
child that finishes at once; `tick` is the steady work a worker keeps claiming meanwhile."""

from __future__ import annotations

import logging
from typing import Any

from tether import Context, Retry, Tether

app = Tether(lease_seconds=2, inline_sleep=0.1)


@app.task(retry=Retry(max_attempts=2, min_delay=0, max_delay=0))
async def full(payload: int, ctx: Context) -> int:
    await ctx.step("double", lambda: payload * 2)
    logging.getLogger("retention-app").warning("run %s logs", ctx.run_id)
    await ctx.create_token(timeout="1h")
    child = await ctx.trigger_and_wait(leaf, payload)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return int(child)


@app.task
async def leaf(payload: int) -> int:
    return payload + 1


@app.task
async def holder(payload: int, ctx: Context) -> None:
    await ctx.trigger(leaf, payload)
    await ctx.wait_for_token(await ctx.create_token(timeout="90d"))


@app.task
async def tick(payload: Any) -> Any:
    return payload
