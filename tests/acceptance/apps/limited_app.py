"""A queue limited to 2 runs at a time. Each run records its own start and end times (and its
worker's pid) as one JSON line in `spans.log` beside this file."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from tether import Queue, Tether

SPANS = Path(__file__).parent / "spans.log"

app = Tether(lease_seconds=5)


@app.task(id="limited", queue=Queue("limited", concurrency=2))
async def limited(payload: dict[str, Any]) -> int:
    start = time.time()
    await asyncio.sleep(payload.get("seconds", 0.3))
    end = time.time()
    line = json.dumps({"n": payload["n"], "key": payload.get("key"), "start": start, "end": end,
                       "pid": os.getpid()})
    with SPANS.open("a") as f:
        f.write(line + "\n")
        f.flush()
    return int(payload["n"])
