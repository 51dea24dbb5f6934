"""Tether: durable background tasks for Python.

    from tether import Tether, Retry, Queue, Context

    app = Tether()

    @app.task(retry=Retry(max_attempts=5))
    async def send_report(payload: dict, ctx: Context) -> dict:
        rows = await ctx.step("query", load_rows, payload["day"])
        await ctx.once("email", send_email, rows)
        return {"rows": len(rows)}
"""

from tether.app import Tether
from tether.clock import ManualClock
from tether.engine.context import Context, SyncContext
from tether.errors import (
    AbortRun,
    ConfigurationError,
    InvalidTransition,
    OnceInterrupted,
    PayloadError,
    ReplayMismatch,
    RunFailed,
    RunNotFound,
    ScheduleNotFound,
    SerializationError,
    StorageUnavailable,
    TetherError,
    TokenNotFound,
    TokenTimedOut,
    UnknownTask,
    WaitTimeout,
)
from tether.handles import RunHandle
from tether.models import Run, RunResult, RunStatus, Token, TokenStatus, TraceEvent
from tether.options import BatchItem, Debounce, Queue, Retry
from tether.schedules import Schedule
from tether.task import Task
from tether.worker.worker import Worker

__all__ = [
    "AbortRun",
    "BatchItem",
    "ConfigurationError",
    "Context",
    "Debounce",
    "InvalidTransition",
    "ManualClock",
    "OnceInterrupted",
    "PayloadError",
    "Queue",
    "ReplayMismatch",
    "Retry",
    "Run",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunResult",
    "RunStatus",
    "Schedule",
    "ScheduleNotFound",
    "SerializationError",
    "StorageUnavailable",
    "SyncContext",
    "Task",
    "Tether",
    "TetherError",
    "Token",
    "TokenNotFound",
    "TokenStatus",
    "TokenTimedOut",
    "TraceEvent",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
]
__version__ = "0.1.0"
