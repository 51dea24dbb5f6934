"""Every way a process creates runs counts in tether_runs_triggered_total: the Python API (a
trigger found by its idempotency key creates none), child runs a task starts, replays and
forks. In process, with this test's own metrics (one per process, started over here)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from metrics_support import parse, value

from tether import Tether
from tether.observe import metrics as tether_metrics
from tether.worker.worker import Worker


@pytest.fixture
def fresh() -> Iterator[tether_metrics.Metrics]:
    saved = tether_metrics._metrics
    tether_metrics._metrics = None
    yield tether_metrics.enable()
    tether_metrics._metrics = saved


def test_triggers_of_every_kind_are_counted(db_url: str, fresh: tether_metrics.Metrics) -> None:
    app = Tether(db_url)
    try:
        @app.task(id="child")
        async def child(payload: int) -> int:
            return payload

        @app.task(id="parent")
        async def parent(payload: int, ctx: Any) -> int:
            await ctx.step("before", lambda: 1)
            handles = [await ctx.trigger("child", payload + i) for i in range(2)]
            return len(handles)

        first = app.trigger("parent", 10, idempotency_key="once")
        again = app.trigger("parent", 10, idempotency_key="once")
        assert again.id == first.id
        assert asyncio.run(Worker(app).run_until_idle()) == 3
        app.runs.replay(first.id)
        app.runs.fork(first.id, from_step="trigger:child")
        samples = parse(fresh.exposition().decode())
        assert value(samples, "tether_runs_triggered_total", task="parent") == 3
        assert value(samples, "tether_runs_triggered_total", task="child") == 2
        assert value(samples, "tether_runs_completed_total", task="child") == 2
    finally:
        app.close()
