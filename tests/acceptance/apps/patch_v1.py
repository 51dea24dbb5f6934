"""Version 1 of a task that charges, sleeps, then sends a receipt. Each step function writes a
line to `patch.log` beside this file. `patch_v2.py` is the same file with a patch (the test
writes it from this one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether import Context, Tether

LOG = Path(__file__).parent / "patch.log"

app = Tether(lease_seconds=5, inline_sleep=0, pin=False)  # its durable calls stay compatible


def _record(what: str) -> str:
    with LOG.open("a") as f:
        f.write(what + "\n")
    return what


@app.task(id="charge")
async def charge(payload: dict[str, Any], ctx: Context) -> str:
    await ctx.step("load", _record, "load")
    branch = await ctx.step("charge", _record, "charge-old")  # PATCH POINT
    await ctx.sleep(payload.get("sleep", 1.0))
    await ctx.step("receipt", _record, "receipt")
    return branch
