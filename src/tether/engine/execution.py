"""A running attempt as the worker sees it (shared by the attempt runner, the finishing
batcher and the worker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tether.engine.scope import RunScope
from tether.storage.records import ClaimedRun


@dataclass
class Execution:
    """A running attempt as the worker sees it."""

    claimed: ClaimedRun
    scope: RunScope | None = None
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "canceled", "lease_lost", "shutdown"
    finishing: bool = False
    holds_slot: bool = False  # a run of a limited queue that holds one of its slots
    began: float = 0.0  # time.monotonic() when it started here
    handed_over: bool = False  # it ended and a run held in line took its slot
    # started as `before` ended, before the commit that ends `before` hands it the slot: until
    # that commit, the slot is stored as held by `before`'s row (or by the one before it)
    before: Execution | None = None
    final: bool = False  # its attempt ended the run (it will not be due again)
