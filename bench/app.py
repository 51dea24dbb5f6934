"""Tasks the benchmarks run. BENCH_LEASE sets the workers' lease in seconds (default 5);
BENCH_RATE_LIMIT gives the no-op task's queue a rate limit of that many runs per second (W1
--rate-limit: the claim's cost with a limit far above the load); BENCH_W12_LIMIT is W12's limit
(runs per second, default 100)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from tether import Context, Queue, RateLimit, Retry, Tether

app = Tether(lease_seconds=float(os.environ.get("BENCH_LEASE", "5")))
if os.environ.get("BENCH_TRACING") == "1":  # --tracing (bench_tracing.py)
    from bench_tracing import install

    install()


def _trivial(i: int) -> int:
    return i


_NOOP_RATE = os.environ.get("BENCH_RATE_LIMIT")


@app.task(queue=Queue("noop", rate_limit=RateLimit(float(_NOOP_RATE), "1s", burst=100))
          if _NOOP_RATE else None)
async def noop(payload: Any) -> Any:
    return payload


@app.task(id="rated", queue=Queue("rated", rate_limit=RateLimit(
    float(os.environ.get("BENCH_W12_LIMIT", "100")), "1s")))
async def rated(payload: Any) -> float:
    """W12: a no-op in a rate-limited queue; returns when it started (epoch seconds)."""
    return time.time()


@app.task(id="fair", queue=Queue("fair", concurrency=10))
async def fair(payload: Any) -> float:
    """W13: 5 ms of work in a queue limited to 10 per concurrency key (a tenant); returns when
    it started (epoch seconds)."""
    start = time.time()
    await asyncio.sleep(0.005)
    return start


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


@app.task(id="sleep-until")
async def sleep_until(payload: dict[str, str], ctx: Context) -> float:
    """W6: parks until payload["until"] (an ISO time); returns when it woke (epoch seconds)."""
    await ctx.sleep_until(payload["until"])
    return time.time()


@app.task(id="sleep-for")
async def sleep_for(payload: dict[str, float], ctx: Context) -> float:
    """W6: sleeps payload["seconds"]; returns how late it woke, in seconds."""
    due = float(await ctx.step("due", time.time)) + payload["seconds"]
    await ctx.sleep(payload["seconds"], name="nap")
    return time.time() - due


@app.task(id="named-limited")
async def named_limited(payload: Any, ctx: Context) -> float:
    """Named limits: one step that takes a unit of the limit "bench-named"; returns when the
    step's function ran (epoch seconds)."""
    return float(await ctx.step("call", time.time, rate_limit="bench-named"))
@app.task(id="gather-tokens")
async def gather_tokens(payload: dict[str, float], ctx: Context) -> float:
    """gathers.py: `width` tokens and a sleep of `sleep` seconds awaited together (one park,
    one resume); returns when it resumed (epoch seconds)."""
    tokens = [await ctx.create_token(tags=["bench-gather"]) for _ in range(int(payload["width"]))]
    await asyncio.gather(ctx.sleep(payload["sleep"]), *(ctx.wait_for_token(t) for t in tokens))
    return time.time()


@app.task(id="one-token")
async def one_token(payload: Any, ctx: Context) -> float:
    """gathers.py: the single wait the gathers are compared with."""
    token = await ctx.create_token(tags=["bench-one"])
    await ctx.wait_for_token(token)
    return time.time()
