"""An idle worker's offer (PostgreSQL, migration 0023): the next run triggered for it is stored
already claimed by that worker, and the message that announces the run carries its row, so
the worker starts it without a claim of its own. This takes a round trip and a transaction off
the path from a trigger to its result when workers wait for work.

A trigger takes an offer only for a run ready at once, of a task the worker serves, in a queue
it serves that has no concurrency limit, queue-wide cap, rate limit, length limit or paused key
and is not paused: the runs a claim takes without any bookkeeping. The run's lease is the one a
claim sent when the offer was made would have set, and the worker counts it by its own clock
from then, as for a claim. A worker holds one offer at a time, and one of its places is kept
for it."""

from __future__ import annotations

from dataclasses import dataclass

TOOK = "took "  # the message to workers: "took <worker id> <run row as JSON, or run id>"


@dataclass(frozen=True)
class Offer:
    worker_id: str
    token: str  # the lease token of the run that takes it
    tasks: list[str]
    queues: list[str] | None  # None: every queue
    version: str | None
    now: float  # the worker's clock when it made the offer
    lease_until: float  # now + the lease: the taking run's lease expiry
    usable_until: float  # a trigger takes it only before this


def took(message: str) -> tuple[str, str] | None:
    """(worker id, row as JSON or run id) of a "took" message; None for any other message."""
    if not message.startswith(TOOK):
        return None
    worker_id, _, rest = message[len(TOOK):].partition(" ")
    return (worker_id, rest) if worker_id and rest else None
