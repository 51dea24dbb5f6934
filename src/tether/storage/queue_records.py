"""The records of queues as the storage reads and writes them: a queue's settings (QueueRecord
and the upsert's parameters), its keys' depths and paused keys, and the depth per status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class QueueRecord:
    name: str
    concurrency: int | None
    paused: bool = False
    # its rate limit (RateLimit): runs per period (None: no limit), the period in seconds, the
    # burst, and how it is keyed ("queue", "concurrency_key" or "payload")
    rate_limit: float | None = None
    rate_period: float | None = None
    rate_burst: int | None = None
    rate_scope: str | None = None
    total_concurrency: int | None = None  # at most this many of its runs in all keys together

    # flow control (issue 22): queue length limit and per-key strategy (migration 0019)
    max_queued: int | None = None
    on_key_limit: str = "queue"

    @property
    def settings(self) -> tuple[object, ...]:
        """The stored columns after the name, in upsert_queue's order."""
        return (self.concurrency, self.rate_limit, self.rate_period, self.rate_burst,
                self.rate_scope, self.total_concurrency, self.max_queued, self.on_key_limit)


@dataclass
class KeyDepth:
    """One concurrency key of a queue: its runs ready to start (QUEUED) and executing."""

    key: str
    queued: int
    executing: int


def queue_rows(queues: list[QueueRecord], now: float) -> list[tuple[object, ...]]:
    """upsert_queue's parameters, in name order (two transactions that lock queue rows lock
    them in the same order)."""
    return [(q.name, *q.settings, now) for q in sorted(queues, key=lambda q: q.name)]


@dataclass
class PausedKeyRecord:
    """A queue's key whose runs are not claimed before `until` (table paused_keys)."""

    queue: str
    key: str
    until: float
    reason: str | None
    created_at: float


@dataclass(frozen=True)
class QueueDepth:
    """How many unfinished runs of one queue are in one status (`Storage.queue_depths`), and for
    QUEUED the earliest `available_at` among them (the oldest ready run; None for the others)."""

    queue: str
    status: str
    count: int
    oldest: float | None = None
