"""Checkpointed steps whose worker the test kills.

Step 7 of `ten-steps` and the `charge` once-step block while the file `release` (beside this file)
does not exist, after writing their line to `executions.log`: the test waits for that line, kills the
worker with SIGKILL, creates `release` and starts another worker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tether import Context, Retry, SyncContext, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"
RELEASE = HERE / "release"

app = Tether(lease_seconds=2)
FAST_RETRY = Retry(max_attempts=3, min_delay=0.1, max_delay=0.1, jitter=False)
BLOCKING_STEP = 7


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")
        f.flush()


async def async_step(i: int, base: int, attempt: int) -> int:
    record(f"step {i} attempt {attempt}")
    while i == BLOCKING_STEP and not RELEASE.exists():
        await asyncio.sleep(0.02)
    return base + i


def sync_step(i: int, base: int, attempt: int) -> int:
    record(f"step {i} attempt {attempt}")
    while i == BLOCKING_STEP and not RELEASE.exists():
        time.sleep(0.02)
    return base + i


@app.task(id="ten-steps", retry=FAST_RETRY)
async def ten_steps(payload: dict[str, int], ctx: Context) -> dict[str, Any]:
    values = [await ctx.step(f"step-{i}", async_step, i, payload["base"], ctx.attempt)
              for i in range(1, 11)]
    return {"values": values, "attempt": ctx.attempt}


@app.task(id="ten-steps-sync", retry=FAST_RETRY)
def ten_steps_sync(payload: dict[str, int], ctx: SyncContext) -> dict[str, Any]:
    values = [ctx.step(f"step-{i}", sync_step, i, payload["base"], ctx.attempt)
              for i in range(1, 11)]
    return {"values": values, "attempt": ctx.attempt}


async def async_prepare(amount: int, attempt: int) -> int:
    record(f"prepare attempt {attempt}")
    return amount * 100


async def async_charge(cents: int, attempt: int) -> str:
    record(f"charge attempt {attempt}")
    while not RELEASE.exists():
        await asyncio.sleep(0.02)
    return f"receipt-{cents}"


async def async_after(receipt: str, attempt: int) -> str:
    record(f"after attempt {attempt}")
    return receipt


@app.task(id="charge-once", retry=FAST_RETRY)
async def charge_once(payload: dict[str, int], ctx: Context) -> str:
    cents = await ctx.step("prepare", async_prepare, payload["amount"], ctx.attempt)
    receipt = await ctx.once("charge", async_charge, cents, ctx.attempt)
    return str(await ctx.step("after", async_after, receipt, ctx.attempt))


def sync_prepare(amount: int, attempt: int) -> int:
    record(f"prepare attempt {attempt}")
    return amount * 100


def sync_charge(cents: int, attempt: int) -> str:
    record(f"charge attempt {attempt}")
    while not RELEASE.exists():
        time.sleep(0.02)
    return f"receipt-{cents}"


def sync_after(receipt: str, attempt: int) -> str:
    record(f"after attempt {attempt}")
    return receipt


@app.task(id="charge-once-sync", retry=FAST_RETRY)
def charge_once_sync(payload: dict[str, int], ctx: SyncContext) -> str:
    cents = ctx.step("prepare", sync_prepare, payload["amount"], ctx.attempt)
    receipt = ctx.once("charge", sync_charge, cents, ctx.attempt)
    return str(ctx.step("after", sync_after, receipt, ctx.attempt))
