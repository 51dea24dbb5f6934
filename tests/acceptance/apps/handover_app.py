"""A queue limited to one run at a time, of short runs. Each run records its start and end (and
its worker's pid) as one JSON line in `spans.log` beside this file; a run given
`cancel_self` cancels itself as its body ends, before the worker commits that end."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from tether import Context, Queue, Tether

SPANS = Path(__file__).parent / "spans.log"

app = Tether(lease_seconds=5)


@app.task(id="short", queue=Queue("one", concurrency=1))
async def short(payload: dict[str, Any], ctx: Context) -> int:
    start = time.time()
    await asyncio.sleep(payload.get("seconds", 0.02))
    end = time.time()
    with SPANS.open("a") as f:
        f.write(json.dumps({"n": payload["n"], "start": start, "end": end, "pid": os.getpid()})
                + "\n")
    if payload.get("cancel_self"):
        app.runs.cancel(ctx.run_id)
    return int(payload["n"])
