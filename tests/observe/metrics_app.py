"""Tasks whose runs move the metrics by known amounts: `two-steps` completes after two steps,
`always-fails` fails both of its attempts, `naps` parks in a durable sleep (inline_sleep=0) and
resumes, `later` is only ever triggered with a delay (it stays DELAYED), `holds` keeps its place
until a file beside the app exists."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether import Context, Queue, Retry, Tether

app = Tether(inline_sleep=0)


def add(a: int, b: int) -> int:
    return a + b


@app.task(id="two-steps", queue=Queue("metrics-q"))
async def two_steps(payload: dict[str, int], ctx: Context) -> int:
    first = await ctx.step("first", add, payload["n"], 1)
    return int(await ctx.step("second", add, first, 1))


@app.task(id="always-fails", queue=Queue("metrics-q"),
          retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05, jitter=False))
async def always_fails(payload: Any) -> None:
    raise RuntimeError("fails on purpose")


@app.task(id="naps", queue=Queue("metrics-q"))
async def naps(payload: Any, ctx: Context) -> str:
    await ctx.sleep(0.3)
    return "rested"


@app.task(id="later", queue=Queue("metrics-later"))
async def later(payload: Any) -> None:
    return None


@app.task(id="holds", queue=Queue("metrics-hold"))
async def holds(payload: Any) -> None:
    release = Path(__file__).with_name("release")
    while not release.exists():
        await asyncio.sleep(0.02)
