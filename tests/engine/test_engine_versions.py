"""Code versions: a worker runs one version; a run records the version of the worker that first
executed it; `app.versions.list()` shows live workers and unfinished runs per version."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from engine_helpers import drain

from tether import Context, ManualClock, Tether, Worker
from tether.errors import ConfigurationError


def test_the_default_version_is_a_hash_of_the_task_sources(db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_VERSION", raising=False)
    first, second = Tether(db_url), Tether(db_url)

    @first.task(id="t")
    async def one(payload: Any) -> int:
        return 1

    @second.task(id="t")
    async def other(payload: Any) -> int:
        return 2

    assert first.version.startswith("src-") and first.version != second.version
    monkeypatch.setenv("TETHER_VERSION", "build-7")
    assert first.version == "build-7"  # the environment, when the app names none
    assert Tether(db_url, version="v1").version == "v1"  # the app's own wins over it
    with pytest.raises(ConfigurationError, match="version must be"):
        Tether(db_url, version="has space")
    first.close()
    second.close()


def test_a_run_keeps_the_version_that_first_executed_it(db_url: str, clock: ManualClock) -> None:
    """Pinned: once it has durable history, only a worker of its version goes on with it."""
    v1, v2 = Tether(db_url, clock=clock, version="v1"), Tether(db_url, clock=clock, version="v2")

    for app in (v1, v2):
        @app.task(id="sleeper")
        async def sleeper(payload: Any, ctx: Context) -> str:
            await ctx.sleep("1h")
            return ctx.run_id

    handle = v1.trigger("sleeper", {})
    assert v1.runs.retrieve(handle.id).version is None  # not started yet
    drain(Worker(v1))
    assert v1.runs.retrieve(handle.id).version == "v1"
    clock.advance(3600)
    assert drain(Worker(v2)) == 0  # due, but not v2's to go on with
    fresh = v2.trigger("sleeper", {})
    assert drain(Worker(v2)) == 1  # a run without history: any version starts it
    assert v2.runs.retrieve(fresh.id).version == "v2"
    drain(Worker(v1))
    done = v1.runs.retrieve(handle.id)
    assert done.output == handle.id and done.version == "v1"
    v1.close()
    v2.close()


def test_unpinned_tasks_go_on_with_any_version(db_url: str, clock: ManualClock) -> None:
    v1 = Tether(db_url, clock=clock, version="v1")
    v2 = Tether(db_url, clock=clock, version="v2", pin=False)  # the app's default

    for app in (v1, v2):
        @app.task(id="sleeper", pin=None if app is v2 else False)
        async def sleeper(payload: Any, ctx: Context) -> str:
            await ctx.sleep("1h")
            return ctx.run_id

    handle = v1.trigger("sleeper", {})
    drain(Worker(v1))
    clock.advance(3600)
    assert drain(Worker(v2)) == 1  # its authors keep the code compatible
    done = v2.runs.retrieve(handle.id)
    assert done.output == handle.id and done.version == "v1"
    v1.close()
    v2.close()


def test_versions_list_live_workers_and_unfinished_runs(db_url: str) -> None:
    app = Tether(db_url, version="v1", lease_seconds=5)

    @app.task(id="waits")
    async def waits(payload: Any, ctx: Context) -> None:
        await ctx.sleep("1h")

    @app.task(id="later")
    async def later(payload: Any) -> None:
        return None

    for _ in range(2):
        app.trigger("waits", {})
    asyncio.run(Worker(app).run_until_idle())
    app.trigger("later", {}, delay="1h")

    async def serve_briefly() -> None:
        worker = Worker(app)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [v for v in app.versions.list() if v.workers]:
            await asyncio.sleep(0.05)
        listed = app.versions.list()
        worker.stop()
        await task
        by_version = {v.version: v for v in listed}
        assert len(by_version["v1"].workers) == 1
        assert by_version["v1"].runs == {"WAITING": 2}
        assert by_version[None].runs == {"DELAYED": 1} and by_version[None].workers == []

    asyncio.run(serve_briefly())
    after = {v.version: v for v in app.versions.list()}
    assert after["v1"].workers == []  # it stopped
    app.close()
