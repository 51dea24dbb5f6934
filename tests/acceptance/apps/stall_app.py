"""An async task that blocks the event loop (time.sleep instead of asyncio.sleep) and one that
does not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tether import Tether

app = Tether(lease_seconds=5)


@app.task(id="blocks-the-loop")
async def blocks_the_loop(payload: dict[str, Any]) -> str:
    time.sleep(payload["seconds"])  # the mistake the stall detector reports
    return "woke"


@app.task(id="quick")
async def quick(payload: Any) -> str:
    await asyncio.sleep(0.01)
    return "ok"
