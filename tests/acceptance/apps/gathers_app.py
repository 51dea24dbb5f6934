"""Several waits at once, run by real worker processes: a child run of 1 s, a sleep of 2 s, a
token and a step gathered (async) or run through ctx.parallel (sync). Each body writes a line
to `executions.log` (beside this file) every time its code runs from the top, so the tests can
count the segments (the first, and one per resume) across processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tether import Context, Retry, SyncContext, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"

app = Tether(lease_seconds=2, inline_sleep=0.2)
ONCE = Retry(max_attempts=1)


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")


@app.task(retry=ONCE)
async def child(seconds: float, ctx: Context) -> str:
    await ctx.sleep(seconds)
    return f"child slept {seconds:g}s"


@app.task(retry=ONCE)
async def gathered(payload: None, ctx: Context) -> dict[str, Any]:
    record(f"start {ctx.run_id}")
    token = await ctx.create_token(timeout="1h")
    await ctx.step("announce", record, f"token {ctx.run_id} {token.id}")

    async def work() -> str:
        await asyncio.sleep(0.05)
        record(f"work {ctx.run_id}")
        return "worked"

    results = await asyncio.gather(ctx.trigger_and_wait(child, 1), ctx.sleep(2),
                                   ctx.wait_for_token(token), ctx.step("work", work))
    return {"results": list(results), "woke": time.time()}


@app.task(retry=ONCE)
def in_parallel(payload: None, ctx: SyncContext) -> dict[str, Any]:
    record(f"start {ctx.run_id}")
    token = ctx.create_token(timeout="1h")
    ctx.step("announce", record, f"token {ctx.run_id} {token.id}")

    def work() -> str:
        record(f"work {ctx.run_id}")
        return "worked"

    results = ctx.parallel(lambda: ctx.trigger_and_wait(child, 1), lambda: ctx.sleep(2),
                           lambda: ctx.wait_for_token(token), lambda: ctx.step("work", work))
    return {"results": results, "woke": time.time()}
