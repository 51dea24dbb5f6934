"""Tasks driven from the `tether` command line."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tether import AbortRun, Context, Retry, Tether

app = Tether(lease_seconds=5)


class Order(BaseModel):
    sku: str
    qty: int


def add_numbers(a: int, b: int) -> int:
    return a + b


@app.task(id="add")
async def add(payload: dict[str, int], ctx: Context) -> dict[str, int]:
    total = await ctx.step("sum", add_numbers, payload["a"], payload["b"])
    return {"sum": total}


@app.task(id="place-order")
def place_order(payload: Order) -> dict[str, Any]:
    return {"sku": payload.sku, "qty": payload.qty, "model": type(payload).__name__}


@app.task(id="refuse")
async def refuse(payload: Any) -> None:
    raise AbortRun("refused on purpose")


@app.task(id="misread", retry=Retry(max_attempts=1))
async def misread(payload: dict[str, Any]) -> Any:
    return payload["timestamp"]  # a KeyError, whose message is only the key: 'timestamp'
