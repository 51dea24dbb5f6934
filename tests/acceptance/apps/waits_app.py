"""Durable waits run by real worker processes: sleeps, tokens, fan-out, a parent and its child
in one queue of concurrency 1. Each task writes a line to `executions.log` (beside this file)
when its code runs, so the tests can count executions across processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tether import Context, Queue, Retry, RunFailed, Tether, WaitTimeout

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"

app = Tether(lease_seconds=2, inline_sleep=0.2)
ONCE = Retry(max_attempts=1)


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")


@app.task(retry=ONCE)
async def nap(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Sleeps until payload["until"] (epoch seconds); returns when it woke."""
    await ctx.step("before", record, f"before {ctx.run_id}")
    await ctx.sleep_until(payload["until_iso"])
    woke = time.time()
    await ctx.step("after", record, f"after {ctx.run_id}")
    return {"woke": woke}


@app.task(retry=ONCE)
async def approval(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    token = await ctx.create_token(timeout=payload["timeout"])
    await ctx.step("announce", record, f"token {ctx.run_id} {token.id}")
    try:
        data = await ctx.wait_for_token(token)
    except WaitTimeout:
        return {"timed_out": True}
    return {"data": data}


@app.task(retry=ONCE)
async def square(payload: int) -> int:
    if payload == 13:
        raise ValueError("thirteen")
    return payload * payload


@app.task(retry=ONCE)
async def fan_out(payload: int, ctx: Context) -> list[Any]:
    results = await ctx.batch_trigger_and_wait(square, list(range(payload)))
    record(f"fan_out resumed with {len(results)}")
    return [r.output if r.ok else f"error: {r.error['message']}" for r in results]  # type: ignore[index]


LANE = Queue("lane", concurrency=1)


@app.task(queue=LANE, retry=ONCE)
async def lane_child(payload: int) -> int:
    return payload + 1


@app.task(queue=LANE, retry=ONCE)
async def lane_parent(payload: int, ctx: Context) -> int:
    try:
        return int(await ctx.trigger_and_wait(lane_child, payload)) * 10
    except RunFailed:
        return -1
