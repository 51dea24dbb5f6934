"""Tasks the benchmarks run."""

from __future__ import annotations

from typing import Any

from tether import Context, Tether

app = Tether()


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
