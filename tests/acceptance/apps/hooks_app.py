"""A task whose only attempt blocks until the test SIGKILLs its worker, and whose on_failure hook
writes what it was called with to `hooks.log` (one JSON line per call).

`blocks` writes "started <run id> attempt <n>" to `executions.log` first. `fails` raises at once:
the ordinary path, to compare the hook's arguments with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tether import Context, Retry, SyncContext, Tether

HERE = Path(__file__).parent
EXECUTIONS = HERE / "executions.log"
HOOKS = HERE / "hooks.log"

app = Tether(lease_seconds=2)
ONCE = Retry(max_attempts=1)


def record(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()


def on_failure(payload: Any, error: Any, ctx: SyncContext) -> None:
    record(HOOKS, json.dumps({"run": ctx.run_id, "attempt": ctx.attempt, "payload": payload,
                              "error_type": error["type"], "message": error["message"]}))


@app.task(id="blocks", retry=ONCE, on_failure=on_failure)
async def blocks(payload: dict[str, Any], ctx: Context) -> None:
    record(EXECUTIONS, f"started {ctx.run_id} attempt {ctx.attempt}")
    while True:
        await asyncio.sleep(0.05)


@app.task(id="fails", retry=ONCE, on_failure=on_failure)
def fails(payload: dict[str, Any]) -> None:
    raise ValueError(f"fails for {payload}")
