"""Shared by the storage contract tests (imported by tests/storage/conftest.py and the tests)."""

from __future__ import annotations

from typing import Any, Protocol

from tether.engine.states import Transition
from tether.options import Queue, Retry
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, Finish, Flush, Lease, RunRecord
from tether.task import TaskSpec

NOW = 1000.0
LEASE = 30.0
TASKS = ["t", "u"]


def spec(task_id: str = "t", queue: str = "q", max_attempts: int = 3) -> TaskSpec:
    return TaskSpec(task_id, Queue(queue), Retry(max_attempts=max_attempts, jitter=False), None, None)


class AddRun(Protocol):
    def __call__(self, payload: Any = None, *, task: str = "t", now: float = NOW,
                 **options: Any) -> RunRecord: ...


class Claim(Protocol):
    def __call__(self, worker: str = "w1", *, limit: int = 10, now: float = NOW,
                 tasks: list[str] | None = None, queues: list[str] | None = None,
                 lease: float = LEASE) -> list[ClaimedRun]: ...


def finish(storage: Storage, lease: Lease, transition: Transition, now: float,
           flush: Flush | None = None) -> RunRecord | None:
    """End one attempt through the batch interface."""
    [record], claimed = storage.finish_attempts([Finish(lease, transition, flush)], now)
    assert claimed == []
    return record
