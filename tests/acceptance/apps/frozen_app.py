"""A queue limited to one run at a time, with a lease of 2 s. Step `s1` records its own start
and end (and its worker's pid) as JSON lines in `steps.log` beside this file. Before the step a
run sleeps `head` seconds and after it `tail` seconds, outside any step (where a test freezes its
worker)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from tether import Context, Queue, Tether

STEPS = Path(__file__).parent / "steps.log"

app = Tether(lease_seconds=2)


def _record(event: str, n: int) -> None:
    with STEPS.open("a") as f:
        f.write(json.dumps({"event": event, "n": n, "at": time.time(), "pid": os.getpid()}) + "\n")
        f.flush()


async def _s1(n: int, seconds: float) -> int:
    _record("start", n)
    await asyncio.sleep(seconds)
    _record("end", n)
    return n


@app.task(id="one-at-a-time", queue=Queue("one", concurrency=1))
async def one_at_a_time(payload: dict[str, Any], ctx: Context) -> int:
    n = int(payload["n"])
    if payload.get("head"):
        _record("head", n)
        await asyncio.sleep(payload["head"])
    await ctx.step("s1", _s1, n, payload.get("step", 0.02))
    await asyncio.sleep(payload.get("tail", 0.02))
    return n
