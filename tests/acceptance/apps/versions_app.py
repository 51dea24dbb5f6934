"""A run that sleeps 2 s between two steps; each step writes its worker's version to
`versions.log` beside this file. The version comes from `tether worker --version`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tether import Context, Tether

LOG = Path(__file__).parent / "versions.log"

app = Tether(lease_seconds=5, inline_sleep=0)


def _record(step: str) -> str:
    with LOG.open("a") as f:
        f.write(f"{step} {os.getpid()}\n")
    return step


@app.task(id="two-steps")
async def two_steps(payload: dict[str, Any], ctx: Context) -> list[str]:
    first = await ctx.step("before", _record, "before")
    await ctx.sleep(payload.get("sleep", 2.0))
    second = await ctx.step("after", _record, "after")
    return [first, second]
