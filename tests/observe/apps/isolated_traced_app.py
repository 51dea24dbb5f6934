"""An isolated task for the trace tests: its steps run in a worker's child process, and their
spans must still be made under the attempt's span. A step that fails once is retried in place;
the child run it awaits runs in the worker's own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether import Retry, SyncContext, Tether

app = Tether(inline_sleep=0.1)
FLAKY = Path(__file__).parent / "flaky-failed"


def _flaky() -> int:
    if not FLAKY.exists():
        FLAKY.touch()
        raise ValueError("the first call fails")
    return 2


@app.task(id="plain-child")
def plain_child(payload: Any, ctx: SyncContext) -> int:
    return int(ctx.step("inner", lambda: payload * 2))


@app.task(id="isolated-steps", isolation="process")
def isolated_steps(payload: Any, ctx: SyncContext) -> int:
    one = ctx.step("one", lambda: 1)
    two = ctx.step("flaky", _flaky, retry=Retry(max_attempts=2, min_delay=0.01, jitter=False))
    ctx.sleep(0.05)
    doubled = ctx.trigger_and_wait(plain_child, 5)
    return int(one + two + doubled)
