"""Runs for shutdown and cancel tests. Each task appends its progress to `executions.log` beside this
file; `long` waits (at an await) until the file `release` exists."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether import Context, Retry, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"
RELEASE = HERE / "release"

app = Tether(lease_seconds=2)


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")
        f.flush()


@app.task(id="long", retry=Retry(max_attempts=3, min_delay=0.1, max_delay=0.1, jitter=False))
async def long(payload: Any, ctx: Context) -> dict[str, int]:
    record(f"long started attempt {ctx.attempt}")
    while not RELEASE.exists():
        await asyncio.sleep(0.02)
    record(f"long finished attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@app.task(id="short")
async def short(payload: dict[str, float], ctx: Context) -> dict[str, float]:
    record(f"short {payload['n']} started")
    await asyncio.sleep(payload["seconds"])
    record(f"short {payload['n']} finished")
    return {"n": payload["n"]}


def first_step() -> str:
    record("first step")
    return "first"


def second_step() -> str:
    record("second step")
    return "second"


@app.task(id="cancellable")
async def cancellable(payload: Any, ctx: Context) -> str:
    await ctx.step("first", first_step)
    record("waiting at the await")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        record("cancelled at the await")
        raise
    return str(await ctx.step("second", second_step))
