"""Fixtures for the storage contract suite: build runs with the engine's own `build_run`."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import LEASE, NOW, TASKS, AddRun, Claim, spec

from tether.engine.triggering import TriggerOptions, build_run
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, RunRecord


@pytest.fixture
def add_run(storage: Storage) -> AddRun:
    """Store one new run of task `task` (queue "q" unless `queue=` is given) and return it."""

    def add(payload: Any = None, *, task: str = "t", now: float = NOW, **options: Any) -> RunRecord:
        new = build_run(spec(task), payload, TriggerOptions(**options), now)
        [(record, created)] = storage.create_runs([new], now)
        assert created or options.get("idempotency_key")
        return record

    return add


@pytest.fixture
def claim(storage: Storage) -> Claim:
    def do(worker: str = "w1", *, limit: int = 10, now: float = NOW, tasks: list[str] | None = None,
           queues: list[str] | None = None, lease: float = LEASE) -> list[ClaimedRun]:
        return storage.claim_runs(worker, tasks or TASKS, queues, limit, now, lease)

    return do
