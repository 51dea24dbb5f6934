"""Tasks with isolation="process" for the isolation tests. Each appends JSON lines to
`events.log` beside this file: what happened, in which process (pid) under which worker (ppid),
and when. A lease of 2 s, so a frozen worker loses its runs quickly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tether import Retry, SyncContext, Tether

HERE = Path(__file__).parent
EVENTS = HERE / "events.log"
RELEASE = HERE / "release"

app = Tether(lease_seconds=2)


def record(event: str, **fields: Any) -> None:
    line = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "at": time.time(), **fields}
    with EVENTS.open("a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()


@app.task(id="spin", isolation="process", max_duration=1)
def spin(payload: Any) -> None:
    record("spin")
    while True:  # never yields, never reaches a durable call
        pass


@app.task(id="spin-forever", isolation="process")
def spin_forever(payload: Any) -> None:
    record("spin-forever")
    while True:
        pass


@app.task(id="noop", isolation="process")
def noop(payload: Any) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.task(id="hog", isolation="process", memory_limit="200MB", retry=Retry(max_attempts=1))
def hog(payload: Any) -> int:
    record("hog")
    kept = bytearray(1_000_000_000)  # 1 GB, five times the limit
    return len(kept)


@app.task(id="abort-once", isolation="process",
          retry=Retry(max_attempts=3, min_delay=0.1, max_delay=0.1, jitter=False))
def abort_once(payload: Any, ctx: SyncContext) -> dict[str, int]:
    record("abort-once", attempt=ctx.attempt)
    if ctx.attempt == 1:
        os.abort()  # as a crash in native code would
    return {"attempt": ctx.attempt}


@app.task(id="segfault", isolation="process", retry=Retry(max_attempts=1))
def segfault(payload: Any) -> None:
    import ctypes

    record("segfault")
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a bug in a C extension would


def _step(n: int, seconds: float) -> int:
    record("step-start", n=n)
    time.sleep(seconds)
    record("step-end", n=n)
    return n


@app.task(id="steps", isolation="process")
def steps(payload: dict[str, Any], ctx: SyncContext) -> list[int]:
    """`count` steps of `seconds` each; with `hold`, it waits for the file `release` after
    step number `hold` (outside any step)."""
    done = []
    for n in range(payload["count"]):
        done.append(ctx.step(f"s{n}", _step, n, payload.get("seconds", 0.01)))
        if payload.get("hold") == n:
            # a durable write: on PostgreSQL the step rows queued before it are on disk too
            # (a crash may lose the last rows of the pipeline, and those steps run again)
            ctx.checkpoint({"held": n})
            record("holding", n=n)
            while not RELEASE.exists():
                time.sleep(0.02)
    ctx.metadata["steps"] = len(done)
    ctx.logger.info("all %d steps done", len(done))
    return done


@app.task(id="whoami", isolation="process")
async def whoami(payload: Any) -> dict[str, Any]:
    """tether.current_context() in a child process, for code the body calls."""
    from tether import current_context

    return {"run_id": current_context().run_id, "pid": os.getpid()}


@app.task(id="whoami-sync", isolation="process")
def whoami_sync(payload: Any) -> dict[str, Any]:
    from tether import current_sync_context

    return {"run_id": current_sync_context().run_id, "pid": os.getpid()}
