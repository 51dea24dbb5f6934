"""Patches (`ctx.patched`, `ctx.deprecate_patch`) with real stored histories: runs recorded by
one version of a task's code, resumed by an app holding the next version, on the same database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engine_helpers import drain, record

from tether import Context, ManualClock, Retry, RunStatus, SyncContext, Tether, Worker
from tether.server.dashboard import timeline
from tether.trace import span_label

ONCE = Retry(max_attempts=1)


@pytest.fixture
def new_app(db_url: str, clock: ManualClock) -> Iterator[Callable[[], Tether]]:
    """Another app on the same database: the next deploy of the code. Unpinned (pin=False),
    as code that keeps old runs working with patches is: its workers go on with runs that
    another version started."""
    opened: list[Tether] = []

    def make() -> Tether:
        opened.append(Tether(db_url, clock=clock, pin=False))
        return opened[-1]

    yield make
    for other in opened:
        other.close()


def v1(app: Tether, calls: list[str]) -> Any:
    @app.task(id="pay", retry=ONCE)
    async def pay(payload: None, ctx: Context) -> str:
        await ctx.step("load", calls.append, "load")
        await ctx.step("charge", calls.append, "charge-old")
        await ctx.sleep(3600)
        await ctx.step("receipt", calls.append, "receipt")
        return "old"

    return pay


def v2(app: Tether, calls: list[str], fail_once: list[bool] | None = None) -> Any:
    @app.task(id="pay", retry=Retry(max_attempts=2, min_delay=1, max_delay=1))
    async def pay(payload: None, ctx: Context) -> str:
        await ctx.step("load", calls.append, "load")
        if ctx.patched("fix-rounding"):
            await ctx.step("charge-rounded", calls.append, "charge-new")
            branch = "new"
        else:
            await ctx.step("charge", calls.append, "charge-old")
            branch = "old"
        assert ctx.patched("fix-rounding") == (branch == "new")  # asked again: the same answer
        if fail_once:
            fail_once.pop()
            raise RuntimeError("boom after the patch point")
        await ctx.sleep(3600)
        await ctx.step("receipt", calls.append, "receipt")
        return branch

    return pay


def v3(app: Tether, calls: list[str]) -> Any:
    @app.task(id="pay", retry=ONCE)
    async def pay(payload: None, ctx: Context) -> str:
        await ctx.step("load", calls.append, "load")
        ctx.deprecate_patch("fix-rounding")
        await ctx.step("charge-rounded", calls.append, "charge-new")
        await ctx.sleep(3600)
        await ctx.step("receipt", calls.append, "receipt")
        return "new"

    return pay


def patch_rows(app: Tether, run_id: str) -> list[tuple[str, str | None, int | None]]:
    return [(s.key, s.output, s.seq) for s in app.storage.load_steps(run_id).values()
            if s.kind == "patch"]


def test_a_run_recorded_before_the_patch_keeps_the_old_branch(
        app: Tether, new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    old = v1(app, calls).trigger()
    drain(Worker(app))
    assert record(app, old.id).status == RunStatus.WAITING  # went past the patch point
    assert calls == ["load", "charge-old"]

    deployed = new_app()
    v2(deployed, calls)
    clock.advance(3600)
    drain(Worker(deployed))
    run = deployed.runs.retrieve(old.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == "old"
    assert calls == ["load", "charge-old", "receipt"]  # stored steps replayed, not called
    # the decision is stored, without a position: the calls after it kept theirs
    assert patch_rows(deployed, old.id) == [("patch:fix-rounding", "false", None)]
    seqs = {s.key: s.seq for s in deployed.storage.load_steps(old.id).values()}
    assert seqs == {"load": 1, "charge": 2, "sleep": 3, "receipt": 4,
                    "patch:fix-rounding": None}


def test_a_new_run_takes_the_new_branch_and_keeps_it(
        app: Tether, new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    v1(app, calls)
    deployed = new_app()
    v2(deployed, calls)
    handle = deployed.trigger("pay")
    drain(Worker(deployed))
    assert record(deployed, handle.id).status == RunStatus.WAITING
    clock.advance(3600)
    drain(Worker(deployed))  # replays the marker: the same answer, no mismatch
    run = deployed.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == "new"
    assert calls == ["load", "charge-new", "receipt"]
    assert patch_rows(deployed, handle.id) == [("patch:fix-rounding", "true", 2)]
    labels = [e.name for e in deployed.runs.trace(handle.id) if e.data.get("kind") == "patch"]
    assert labels == ["patch:fix-rounding"]


def test_a_run_that_had_not_reached_the_point_takes_the_new_branch(
        app: Tether, new_app: Callable[[], Tether], clock: ManualClock) -> None:
    """Parked before the patch point by the old code: it reaches the point first on new code."""
    calls: list[str] = []

    @app.task(id="pay", retry=ONCE)
    async def pay(payload: None, ctx: Context) -> str:
        await ctx.sleep(3600)
        await ctx.step("charge", calls.append, "charge-old")
        return "old"

    handle = pay.trigger()
    drain(Worker(app))
    deployed = new_app()

    @deployed.task(id="pay", retry=ONCE)
    async def pay2(payload: None, ctx: Context) -> str:
        await ctx.sleep(3600)
        if ctx.patched("fix-rounding"):
            await ctx.step("charge-rounded", calls.append, "charge-new")
            return "new"
        await ctx.step("charge", calls.append, "charge-old")
        return "old"

    clock.advance(3600)
    drain(Worker(deployed))
    run = deployed.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == "new"
    assert calls == ["charge-new"]


def test_the_decision_is_stored_once_and_a_retry_gets_it_again(
        new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    deployed = new_app()
    v2(deployed, calls, fail_once=[True])
    handle = deployed.trigger("pay")
    drain(Worker(deployed))  # attempt 1 stores the marker, then fails
    assert record(deployed, handle.id).status == RunStatus.QUEUED
    assert patch_rows(deployed, handle.id) == [("patch:fix-rounding", "true", 2)]
    clock.advance(1)
    drain(Worker(deployed))
    clock.advance(3600)
    drain(Worker(deployed))
    run = deployed.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == "new" and run.attempts == 2
    assert calls == ["load", "charge-new", "receipt"]
    assert patch_rows(deployed, handle.id) == [("patch:fix-rounding", "true", 2)]


def test_deprecate_patch_replays_runs_that_stored_the_marker(
        new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    second = new_app()
    v2(second, calls)
    marked = second.trigger("pay")
    drain(Worker(second))  # parked after storing the True marker
    third = new_app()
    v3(third, calls)
    fresh = third.trigger("pay")
    drain(Worker(third))
    clock.advance(3600)
    drain(Worker(third))
    for run_id in (marked.id, fresh.id):
        run = third.runs.retrieve(run_id)
        assert run.status == RunStatus.COMPLETED and run.output == "new", run.error
    assert patch_rows(third, marked.id) == [("patch:fix-rounding", "true", 2)]
    assert patch_rows(third, fresh.id) == []  # nothing stored for new runs
    assert third.storage.load_steps(fresh.id)["charge-rounded"].seq == 2


def two_naps(target: Tether, n: int, calls: list[str]) -> None:
    """Version n of a task that parks twice after the patch point (3: the patch deprecated)."""

    @target.task(id="two-naps", retry=ONCE)
    async def naps(payload: None, ctx: Context) -> str:
        if n == 1 or (n == 2 and not ctx.patched("fix-rounding")):
            await ctx.step("charge", calls.append, "charge-old")
            branch = "old"
        else:
            if n == 3:
                ctx.deprecate_patch("fix-rounding")
            await ctx.step("charge-rounded", calls.append, "charge-new")
            branch = "new"
        await ctx.sleep(3600, name="first")
        await ctx.sleep(3600, name="second")
        return branch


def test_an_old_branch_decision_holds_across_later_resumes(
        app: Tether, new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    two_naps(app, 1, calls)
    old = app.trigger("two-naps")
    drain(Worker(app))
    second = new_app()
    two_naps(second, 2, calls)
    clock.advance(3600)
    drain(Worker(second))  # False stored; parked again
    assert record(second, old.id).status == RunStatus.WAITING
    clock.advance(3600)
    drain(Worker(second))
    run = second.runs.retrieve(old.id)
    assert run.status == RunStatus.COMPLETED and run.output == "old", run.error
    assert calls == ["charge-old"]
    assert patch_rows(second, old.id) == [("patch:fix-rounding", "false", None)]


def test_deprecate_patch_refuses_a_run_that_took_the_old_branch(
        app: Tether, new_app: Callable[[], Tether], clock: ManualClock) -> None:
    calls: list[str] = []
    two_naps(app, 1, calls)
    old = app.trigger("two-naps")
    drain(Worker(app))
    second = new_app()
    two_naps(second, 2, calls)
    clock.advance(3600)
    drain(Worker(second))  # v2 decides False for it (stored), and it parks again
    assert record(second, old.id).status == RunStatus.WAITING
    assert patch_rows(second, old.id) == [("patch:fix-rounding", "false", None)]
    third = new_app()
    two_naps(third, 3, calls)
    clock.advance(3600)
    drain(Worker(third))
    run = third.runs.retrieve(old.id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "tether.errors.ReplayMismatch"
    assert "old branch of patch 'fix-rounding'" in run.error["message"]
    assert calls == ["charge-old"]


def test_sync_context_patches(app: Tether, new_app: Callable[[], Tether],
                              clock: ManualClock) -> None:
    calls: list[str] = []

    @app.task(id="sync-pay", retry=ONCE)
    def pay(payload: None, ctx: SyncContext) -> str:
        ctx.step("charge", calls.append, "charge-old")
        ctx.sleep(3600)
        return "old"

    old = pay.trigger()
    drain(Worker(app))
    deployed = new_app()

    @deployed.task(id="sync-pay", retry=ONCE)
    def pay2(payload: None, ctx: SyncContext) -> str:
        branch = "new" if ctx.patched("v2") else "old"
        ctx.step("charge" if branch == "old" else "charge-v2", calls.append, f"charge-{branch}")
        ctx.sleep(3600)
        return branch

    new = deployed.trigger("sync-pay")
    drain(Worker(deployed))
    clock.advance(3600)
    drain(Worker(deployed))
    drain(Worker(deployed))
    clock.advance(3600)
    drain(Worker(deployed))
    assert deployed.runs.retrieve(old.id).output == "old"
    assert deployed.runs.retrieve(new.id).output == "new"
    assert sorted(calls) == ["charge-new", "charge-old"]


def test_the_trace_names_the_branch(new_app: Callable[[], Tether]) -> None:
    deployed = new_app()
    v2(deployed, [])
    handle = deployed.trigger("pay")
    drain(Worker(deployed))
    [event] = [e for e in deployed.runs.trace(handle.id) if e.data.get("kind") == "patch"]
    assert event.data["detail"] is True
    assert span_label(event) == "patch fix-rounding: new code"
    trace = deployed.runs.trace(handle.id)
    drawn = timeline.build(deployed.runs.retrieve(handle.id), trace, {}, 2e9)
    assert "patch fix-rounding: new code" in [row.label for row in drawn.rows]
