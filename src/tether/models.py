"""Public, read-only views of stored data: runs, attempts and trace events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """A run's status; its value is its name (`RunStatus("FAILED")`). The final ones are
    COMPLETED, FAILED, CANCELED, TIMED_OUT and EXPIRED."""

    DELAYED = "DELAYED"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        """Whether a run in this status has ended."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TIMED_OUT, RunStatus.EXPIRED}
)


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class Run:
    """A run as stored: what `app.runs.retrieve` and `app.runs.list` return. Times are
    timezone-aware UTC datetimes."""

    id: str
    """The run's id, `run_...`."""
    task_id: str
    """The id of the task it runs."""
    status: RunStatus
    """Where the run is: see `RunStatus`."""
    payload: Any
    """The payload, as stored (JSON)."""
    output: Any
    """The task's return value once COMPLETED, else None."""
    error: dict[str, Any] | None
    """Why the last attempt failed: `message`, `type` and `traceback`; None if none did."""
    attempts: int
    """The number of its latest attempt, 0 before the first."""
    tags: list[str]
    """Its tags, sorted."""
    metadata: dict[str, Any]
    """Its metadata, as last stored."""
    idempotency_key: str | None
    """The idempotency key it was triggered with, if any."""
    parent_id: str | None
    """The run that triggered it with `ctx.trigger...`, if any."""
    root_id: str | None
    """The first run of its tree of child runs, if it is a child."""
    created_at: datetime
    """When it was triggered."""
    started_at: datetime | None
    """When its first attempt started."""
    finished_at: datetime | None
    """When it ended."""
    queue: str = ""
    """The queue it runs in."""
    concurrency_key: str | None = None
    """The key its queue's limit applies to, if any."""
    priority: int = 0
    """Its priority in the queue: higher starts first."""
    max_attempts: int = 1
    """How many attempts it may take."""
    available_at: datetime | None = None
    """When it is due: the end of its delay, of a retry's backoff or of a wait."""
    updated_at: datetime | None = None
    """When it last changed."""
    version: str | None = None
    """The code version of the worker that first executed it (`Tether(version=...)`); None
    until it starts."""
    trace_context: str | None = None
    """The W3C trace context its spans join (the `traceparent` current when it was triggered,
    and the `tracestate` on a second line); None when it was triggered outside any trace."""

    @property
    def trace_id(self) -> str | None:
        """The id of the OpenTelemetry trace its spans belong to (32 hex digits), from
        `trace_context`; None without one."""
        return self.trace_context[3:35] if self.trace_context else None

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self.status.is_final


@dataclass(frozen=True)
class RunResult:
    """One child's outcome in a fan-out: `ok` with `output`, or not with `error`."""

    ok: bool
    """Whether the child run COMPLETED."""
    output: Any
    """Its output when `ok`, else None."""
    error: dict[str, Any] | None
    """When not `ok`: its error (`message`, ...), or its final status as `message`."""
    run_id: str
    """The child run's id."""


@dataclass(frozen=True)
class TraceEvent:
    """One entry of a run's trace, in time order.

    `kind` is one of: "status" (a transition), "attempt", "step", "wait" (a sleep, a token wait or
    a wait for child runs; `data["runs"]` names the children), "child" (children started without
    waiting), "log".
    """

    kind: str
    """What the event is: see above."""
    at: datetime
    """When it happened, or started."""
    name: str
    """A step's key (`fetch#2`), an attempt (`attempt 2`), the status a change moved to, ..."""
    attempt: int | None = None
    """The attempt it belongs to, if any."""
    ended_at: datetime | None = None
    """When it ended, for spans."""
    outcome: str | None = None
    """How a span ended: COMPLETED, FAILED, ..."""
    data: dict[str, Any] = field(default_factory=dict)
    """Details: a change's reason, an error, the child runs of a wait (`runs`), ..."""

    @property
    def duration_ms(self) -> float | None:
        """How long a span took, in milliseconds; None for a point in time or an open span."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.at).total_seconds() * 1000.0


class TokenStatus(StrEnum):
    """A token's status: WAITING until completed (COMPLETED) or past its timeout (TIMED_OUT)."""

    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True)
class Token:
    """A waitpoint token: `ctx.wait_for_token(token)` parks a run until someone completes it."""

    id: str
    """The token's id, `waitpoint_...`."""
    status: TokenStatus
    """WAITING, COMPLETED or TIMED_OUT."""
    output: Any
    """The data it was completed with."""
    timeout_at: datetime | None
    """When it times out, if ever."""
    created_at: datetime
    """When it was created."""
    completed_at: datetime | None
    """When it was completed."""
    run_id: str | None  # the run that created it, if any
    """The run that created it, if a run did."""
    idempotency_key: str | None = None
    """Its idempotency key, if any."""
    tags: list[str] = field(default_factory=list)
    """Its tags, sorted."""
    run_ended: RunStatus | None = None
    """For a WAITING token whose creating run has ended, that run's final status: nothing it
    was made for waits for it any more (completing it raises TokenRunEnded unless another run
    waits for it). Set by `app.tokens.list` and `retrieve`."""
