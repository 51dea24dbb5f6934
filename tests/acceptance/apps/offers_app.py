"""A task in a queue without limits, with a lease of 2 s: each start of a run is recorded (its
number, the time, the worker's pid) as a JSON line in `starts.log` beside this file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tether import Tether

STARTS = Path(__file__).parent / "starts.log"

app = Tether(lease_seconds=2)


@app.task(id="noted")
async def noted(n: int) -> int:
    with STARTS.open("a") as f:
        f.write(json.dumps({"n": n, "at": time.time(), "pid": os.getpid()}) + "\n")
    return n
