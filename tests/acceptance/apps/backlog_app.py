"""A run that blocks until its worker is killed, and a backlog of short runs behind it. Each run
writes a line to `backlog.log` beside this file when its attempt starts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tether import Context, Tether

LOG = Path(__file__).parent / "backlog.log"

app = Tether(lease_seconds=5)


def _record(name: str, attempt: int) -> None:
    with LOG.open("a") as f:
        f.write(json.dumps({"name": name, "attempt": attempt, "at": time.time()}) + "\n")
        f.flush()


@app.task(id="victim")
async def victim(payload: dict[str, Any], ctx: Context) -> int:
    _record("victim", ctx.attempt)
    if ctx.attempt == 1:
        await asyncio.sleep(60)  # its worker is killed meanwhile
    return ctx.attempt


@app.task(id="filler")
async def filler(payload: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(0.02)
