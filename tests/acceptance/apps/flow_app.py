"""Flow control in real worker processes: back-pressure (RetryAfter, and an HTTP 429 with
Retry-After from a stub server, read with httpx) and a named rate limit shared by workers. Each
run writes one JSON line per start to `starts.log` beside this file (`n`, its key, its attempt,
the time, the worker's pid); a step that took from the named limit writes one to `takes.log`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from tether import Context, Queue, RetryAfter, SyncContext, Tether

HERE = Path(__file__).parent
STARTS = HERE / "starts.log"
TAKES = HERE / "takes.log"
TOLD = HERE / "told"  # a marker per run told to come back later: told once only

app = Tether(lease_seconds=5)


def _line(path: Path, **fields: Any) -> None:
    with path.open("a") as f:
        f.write(json.dumps({**fields, "at": time.time(), "pid": os.getpid()}) + "\n")


def _call(payload: dict[str, Any], run_id: str) -> str:
    """The outside call: told to wait once (RetryAfter, or the stub server's 429)."""
    marker = TOLD / run_id
    if payload.get("url"):
        response = httpx.get(payload["url"], headers={"X-Run": run_id}, timeout=5)
        response.raise_for_status()
        return response.text
    if payload.get("push") and not marker.exists():
        TOLD.mkdir(exist_ok=True)
        marker.touch()
        raise RetryAfter(payload["push"], "the provider is overloaded")
    return "ok"


@app.task(id="tenant-call", queue=Queue("tenants"), respect_retry_after=True)
async def tenant_call(payload: dict[str, Any], ctx: Context) -> str:
    _line(STARTS, n=payload["n"], key=payload["key"], attempt=ctx.attempt)
    return str(await ctx.step("call", _call, payload, ctx.run_id))


@app.task(id="rated", queue=Queue("rated"))
async def rated(payload: int, ctx: Context) -> int:
    await ctx.step("call", lambda: _line(TAKES, n=payload), rate_limit="shared")
    return payload


@app.task(id="rated-sync", queue=Queue("rated"))
def rated_sync(payload: int, ctx: SyncContext) -> int:
    ctx.step("call", lambda: _line(TAKES, n=payload), rate_limit="shared")
    return payload


@app.task(id="parker", queue=Queue("solo"))
async def parker(payload: None, ctx: Context) -> str:
    await ctx.acquire("slow")
    _line(STARTS, n="parker-1", key="", attempt=ctx.attempt)
    await ctx.acquire("slow")  # the next unit is 5 s away: the run parks
    _line(STARTS, n="parker-2", key="", attempt=ctx.attempt)
    return "parked and back"


@app.task(id="quick", queue=Queue("solo"))
async def quick(payload: None, ctx: Context) -> str:
    _line(STARTS, n="quick", key="", attempt=ctx.attempt)
    return "quick"
