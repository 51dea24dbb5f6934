"""Tasks the benchmarks run. BENCH_LEASE sets the workers' lease in seconds (default 5)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from tether import Context, Queue, Retry, Tether

app = Tether(lease_seconds=float(os.environ.get("BENCH_LEASE", "5")))


def _trivial(i: int) -> int:
    return i


@app.task
async def noop(payload: Any) -> Any:
    return payload


@app.task
async def steps(payload: dict[str, int], ctx: Context) -> int:
    for i in range(payload["n"]):
        await ctx.step("s", _trivial, i)
    return payload["n"]


@app.task(queue=Queue("limited8", concurrency=8))
async def limited(payload: Any) -> dict[str, float]:
    """W5: 5 ms of work in a queue that runs at most 8 at once; returns when it ran."""
    start = time.time()
    await asyncio.sleep(0.005)
    return {"start": start, "end": time.time()}


async def _pause(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(retry=Retry(max_attempts=3, min_delay=0, max_delay=0))
async def slow_steps(payload: dict[str, float], ctx: Context) -> int:
    """Failover: `n` checkpointed steps of `pause` seconds each; retried at once after a crash."""
    n = int(payload["n"])
    for i in range(n):
        await ctx.step(f"s{i}", _pause, payload["pause"])
    return n
