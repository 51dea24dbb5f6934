"""A run of many steps, written in the step pipeline on PostgreSQL, whose worker or database a test
breaks mid-run. Every call of a step records `key execution-id attempt pid` in `executions.log`
beside this file and returns that execution id, so a test can tell whether a stored result is
from the step's last execution; every `once` call appends `key attempt pid` to `once.log`.

Payload: `n` calls (every 100th, from the 50th, is a `once`), `pace` seconds of sleep in each
step, `kill_at`: the step at which attempt 1 kills its own worker with SIGKILL (-1: none).
PIPELINE_LEASE sets the lease in seconds (default 2)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from tether import Context, Retry, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"
ONCE = HERE / "once.log"

app = Tether(lease_seconds=float(os.environ.get("PIPELINE_LEASE", "2")))


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


async def _step(key: str, attempt: int, pace: float, kill: bool) -> str:
    execution = uuid.uuid4().hex
    _append(EXECUTIONS, f"{key} {execution} {attempt} {os.getpid()}")
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    if pace:
        await asyncio.sleep(pace)
    return execution


def _once(key: str, attempt: int) -> str:
    _append(ONCE, f"{key} {attempt} {os.getpid()}")
    return key


@app.task(id="long-run", retry=Retry(max_attempts=5, min_delay=0, max_delay=0))
async def long_run(payload: dict[str, Any], ctx: Context) -> int:
    n, pace, kill_at = int(payload["n"]), float(payload.get("pace", 0)), payload.get("kill_at", -1)
    for i in range(n):
        if i % 100 == 50:
            await ctx.once(f"o{i}", _once, f"o{i}", ctx.attempt)
        else:
            await ctx.step(f"s{i}", _step, f"s{i}", ctx.attempt, pace,
                           ctx.attempt == 1 and i == kill_at)
    return n
