"""Tasks of bench/iso_overhead.py: the same no-op in the worker's process (async on its loop,
sync in a thread) and in its child processes (isolation="process")."""

from __future__ import annotations

from typing import Any

from tether import Tether

app = Tether()


@app.task(id="noop-async")
async def noop_async(payload: Any) -> Any:
    return payload


@app.task(id="noop-thread")
def noop_thread(payload: Any) -> Any:
    return payload


@app.task(id="noop-process", isolation="process")
def noop_process(payload: Any) -> Any:
    return payload
