"""Queues with flow control (issue 22): a rate limit, a rate limit per concurrency key, a cap
across keys, and keys taking turns. Each run writes one JSON line to `starts.log` beside this
file as it starts (its own clock) and to `ends.log` as it ends."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from tether import Queue, RateLimit, Tether

HERE = Path(__file__).parent

app = Tether(lease_seconds=5)


def _record(name: str, payload: dict[str, Any], at: float) -> None:
    line = json.dumps({"n": payload.get("n"), "key": payload.get("key"), "at": at,
                       "pid": os.getpid()})
    with (HERE / name).open("a") as f:
        f.write(line + "\n")


async def _body(payload: dict[str, Any]) -> int:
    _record("starts.log", payload, time.time())
    await asyncio.sleep(payload.get("seconds", 0.01))
    _record("ends.log", payload, time.time())
    return int(payload.get("n", 0))


@app.task(id="rated", queue=Queue("rated", rate_limit=RateLimit(20, "1s")))
async def rated(payload: dict[str, Any]) -> int:
    return await _body(payload)


@app.task(id="keyed", queue=Queue(
    "keyed", rate_limit=RateLimit(2, "1s", key="concurrency_key")))
async def keyed(payload: dict[str, Any]) -> int:
    return await _body(payload)


@app.task(id="capped", queue=Queue("capped", concurrency=2, total_concurrency=3))
async def capped(payload: dict[str, Any]) -> int:
    return await _body(payload)


@app.task(id="fair", queue=Queue("fair", concurrency=10))
async def fair(payload: dict[str, Any]) -> int:
    return await _body(payload)
