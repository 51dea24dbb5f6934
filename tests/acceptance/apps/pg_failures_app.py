"""Tasks for the PostgreSQL failure tests. Every call of a step function appends one line to
`executions.log` beside this file: `RUN_ID STEP attempt ATTEMPT pid PID` (or `RUN_ID exec ...` for
the single-step `tick` task), so a test can count how often each piece of work ran.

`TETHER_TEST_HOSTNAME`, when set, replaces this process's host name: a worker started with it looks
like one on another machine, so the others cannot shortcut its death by checking its pid.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from tether import Context, Retry, Tether

if os.environ.get("TETHER_TEST_HOSTNAME"):
    _fake_host = os.environ["TETHER_TEST_HOSTNAME"]
    socket.gethostname = lambda: _fake_host

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"
RELEASE = HERE / "release"

app = Tether(lease_seconds=2)
FAST_RETRY = Retry(max_attempts=5, min_delay=0.1, max_delay=0.1, jitter=False)


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")
        f.flush()


async def work(run_id: str, step: int, attempt: int, seconds: float, block: bool) -> int:
    record(f"{run_id} {step} attempt {attempt} pid {os.getpid()}")
    await asyncio.sleep(seconds)
    while block and not RELEASE.exists():
        await asyncio.sleep(0.02)
    return step * 10


@app.task(id="chain", retry=FAST_RETRY)
async def chain(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """`steps` steps of `seconds` each; step `block_at` (if any) waits for the `release` file."""
    values = []
    for step in range(1, payload["steps"] + 1):
        block = step == payload.get("block_at")
        values.append(await ctx.step(f"step-{step}", work, ctx.run_id, step, ctx.attempt,
                                     payload.get("seconds", 0.0), block))
    return {"values": values, "attempt": ctx.attempt, "pid": os.getpid()}


@app.task(id="tick", retry=FAST_RETRY)
async def tick(payload: dict[str, Any], ctx: Context) -> int:
    record(f"{ctx.run_id} exec attempt {ctx.attempt} pid {os.getpid()}")
    return int(payload["n"])
