"""An isolated task for the trace tests: its steps run in a worker's child process, and their
spans must still be made under the attempt's span. A step that fails once is retried in place;
the child run it awaits runs in the worker's own process. It logs, in the child, to a side file
in a format that names the record's trace and span ids."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tether import Retry, SyncContext, Tether

app = Tether(inline_sleep=0.1)
FLAKY = Path(__file__).parent / "flaky-failed"
LOG = Path(__file__).parent / "isolated.log"


def _logger() -> logging.Logger:
    """A logger writing to LOG (set up where the task runs: in the child process)."""
    logger = logging.getLogger("isolated_traced_app")
    if not logger.handlers:
        handler = logging.FileHandler(LOG)
        handler.setFormatter(logging.Formatter(
            "%(process)d %(otelTraceID)s %(otelSpanID)s %(otelTraceSampled)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


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
    _logger().info("attempt %d in pid %d", ctx.attempt, os.getpid())
    two = ctx.step("flaky", _flaky, retry=Retry(max_attempts=2, min_delay=0.01, jitter=False))
    ctx.sleep(0.05)
    doubled = ctx.trigger_and_wait(plain_child, 5)
    return int(one + two + doubled)
