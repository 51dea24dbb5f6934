"""tether.current_context() / current_sync_context(): the running attempt's context for code the
task's body calls, in async tasks, sync tasks (their thread) and asyncio tasks a body starts; a
clear NoRunContext outside a run or in a task of the other flavour."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import drain

from tether import (
    Context,
    NoRunContext,
    SyncContext,
    Tether,
    Worker,
    current_context,
    current_sync_context,
)


def test_outside_a_run_both_raise_a_clear_error() -> None:
    with pytest.raises(NoRunContext, match=r"current_context\(\) was called outside a run"):
        current_context()
    with pytest.raises(NoRunContext, match=r"current_sync_context\(\) was called outside a run"):
        current_sync_context()


def test_an_async_task_sees_its_own_ctx_also_in_tasks_it_starts(app: Tether) -> None:
    seen: list[object] = []

    async def helper() -> str:
        found = current_context()
        return await found.step("helper", lambda: found.run_id)

    @app.task
    async def body(payload: None, ctx: Context) -> list[str]:
        seen.append(current_context() is ctx)
        inner = await asyncio.gather(asyncio.create_task(helper()))
        with pytest.raises(NoRunContext, match="is an async task"):
            current_sync_context()
        return inner

    @app.task
    async def no_ctx(payload: None) -> str:
        found = current_context()
        seen.append(found)
        return await found.step("one", lambda: "stored")

    first, second = body.trigger(), no_ctx.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(first.id).output == [first.id]
    assert app.runs.retrieve(second.id).output == "stored"
    assert seen[0] is True
    made = seen[1]
    assert isinstance(made, Context) and made.run_id == second.id and made.task_id == no_ctx.id
    with pytest.raises(NoRunContext):  # reset once the body ended
        current_context()


def test_a_sync_task_sees_its_sync_context_in_its_thread(app: Tether) -> None:
    seen: list[object] = []

    @app.task
    def body(payload: None, ctx: SyncContext) -> str:
        seen.append(current_sync_context() is ctx)
        with pytest.raises(NoRunContext, match=r"plain `def` task .*current_sync_context\(\)"):
            current_context()
        return str(current_sync_context().step("one", lambda: "kept"))

    @app.task
    def no_ctx(payload: None) -> str:
        return current_sync_context().run_id

    first, second = body.trigger(), no_ctx.trigger()
    drain(Worker(app))
    assert app.runs.retrieve(first.id).output == "kept"
    assert app.runs.retrieve(second.id).output == second.id
    assert seen == [True]
