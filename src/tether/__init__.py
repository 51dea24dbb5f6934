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
from tether.client import Client, RemoteRunHandle
from tether.clock import ManualClock
from tether.engine.context import Context, SyncContext
from tether.engine.current import current_context, current_sync_context
from tether.errors import (
    AbortRun,
    AuthenticationError,
    ConfigurationError,
    InvalidTransition,
    NoRunContext,
    OnceInterrupted,
    OutputTooLarge,
    PayloadError,
    PayloadNotStorable,
    PayloadTooLarge,
    QueueFull,
    QueueNotFound,
    ReplayMismatch,
    RequestFailed,
    RetryAfter,
    RunFailed,
    RunNotFound,
    ScheduleNotFound,
    SerializationError,
    ServerUnavailable,
    StepNotFound,
    StorageUnavailable,
    TetherError,
    TokenNotFound,
    TokenRunEnded,
    TokenTimedOut,
    UnknownRateLimit,
    UnknownTask,
    WaitTimeout,
)
from tether.handles import RunHandle
from tether.models import Run, RunResult, RunStatus, Token, TokenStatus, TraceEvent
from tether.options import BatchItem, Debounce, Queue, RateLimit, Retry
from tether.rate_limits import NamedLimit
from tether.schedules import Schedule
from tether.task import Task
from tether.worker.worker import Worker

__all__ = [
    "AbortRun",
    "AuthenticationError",
    "BatchItem",
    "Client",
    "ConfigurationError",
    "Context",
    "Debounce",
    "InvalidTransition",
    "ManualClock",
    "NamedLimit",
    "NoRunContext",
    "OnceInterrupted",
    "OutputTooLarge",
    "PayloadError",
    "PayloadNotStorable",
    "PayloadTooLarge",
    "Queue",
    "QueueFull",
    "QueueNotFound",
    "RateLimit",
    "RemoteRunHandle",
    "ReplayMismatch",
    "RequestFailed",
    "Retry",
    "RetryAfter",
    "Run",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunResult",
    "RunStatus",
    "Schedule",
    "ScheduleNotFound",
    "SerializationError",
    "ServerUnavailable",
    "StepNotFound",
    "StorageUnavailable",
    "SyncContext",
    "Task",
    "Tether",
    "TetherError",
    "Token",
    "TokenNotFound",
    "TokenRunEnded",
    "TokenStatus",
    "TokenTimedOut",
    "TraceEvent",
    "UnknownRateLimit",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "current_context",
    "current_sync_context",
]
__version__ = "0.1.0"
