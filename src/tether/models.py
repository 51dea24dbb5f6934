"""Public, read-only views of stored data: runs, attempts and trace events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
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
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TIMED_OUT, RunStatus.EXPIRED}
)


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class Run:
    id: str
    task_id: str
    status: RunStatus
    payload: Any
    output: Any
    error: dict[str, Any] | None
    attempts: int
    tags: list[str]
    metadata: dict[str, Any]
    idempotency_key: str | None
    parent_id: str | None
    root_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue: str = ""
    concurrency_key: str | None = None
    priority: int = 0
    max_attempts: int = 1
    available_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status.is_final


@dataclass(frozen=True)
class RunResult:
    """One child's outcome in a fan-out: `ok` with `output`, or not with `error`."""

    ok: bool
    output: Any
    error: dict[str, Any] | None
    run_id: str


@dataclass(frozen=True)
class TraceEvent:
    """One entry of a run's trace, in time order.

    `kind` is one of: "status" (a transition), "attempt", "step", "wait" (a sleep, a token wait or
    a wait for child runs; `data["runs"]` names the children), "child" (children started without
    waiting), "log".
    """

    kind: str
    at: datetime
    name: str
    attempt: int | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.at).total_seconds() * 1000.0


class TokenStatus(StrEnum):
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True)
class Token:
    """A waitpoint token: `ctx.wait_for_token(token)` parks a run until someone completes it."""

    id: str
    status: TokenStatus
    output: Any
    timeout_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    run_id: str | None  # the run that created it, if any
    idempotency_key: str | None = None
    tags: list[str] = field(default_factory=list)
    # a WAITING token whose creating run has ended (its final status): nothing it was made for
    # waits for it any more (set by app.tokens' list and retrieve)
    run_ended: RunStatus | None = None
