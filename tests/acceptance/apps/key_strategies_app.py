"""Runs for the per-key strategy tests. Each run appends its progress to `executions.log`
beside this file; a run waits (at an await) until the file `release-<n>` exists."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether import Context, Queue, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"

app = Tether(lease_seconds=5)


def record(line: str) -> None:
    with EXECUTIONS.open("a") as f:
        f.write(line + "\n")
        f.flush()


async def hold(payload: dict[str, Any], ctx: Context) -> int:
    n = payload["n"]
    record(f"{n} started")
    try:
        while not (HERE / f"release-{n}").exists():
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        record(f"{n} cancelled")
        raise
    record(f"{n} finished")
    return int(n)


@app.task(id="deploy", queue=Queue("deploys", concurrency=1, on_key_limit="cancel_in_progress"))
async def deploy(payload: dict[str, Any], ctx: Context) -> int:
    return await hold(payload, ctx)


@app.task(id="sync", queue=Queue("syncs", concurrency=1, on_key_limit="cancel_newest"))
async def sync(payload: dict[str, Any], ctx: Context) -> int:
    return await hold(payload, ctx)
