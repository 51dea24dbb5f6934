"""Tasks that log inside their runs, one in the worker's process and one isolated in a child
process, for the test of `tether worker`'s log lines under tracing."""

from __future__ import annotations

import logging
import os
from typing import Any

from tether import Context, SyncContext, Tether

app = Tether()
log = logging.getLogger("logging_app")


@app.task(id="logs")
async def logs(payload: Any, ctx: Context) -> int:
    log.info("inside the run, pid %d", os.getpid())
    return int(await ctx.step("one", lambda: 1))


@app.task(id="isolated-logs", isolation="process")
def isolated_logs(payload: Any, ctx: SyncContext) -> int:
    log.info("inside the isolated run, pid %d", os.getpid())
    return int(ctx.step("one", lambda: 1))
