"""`app.runs.migrate`: runs pinned to an old version move onto the new code's version only when
their history replays on it; the others are refused with the reason and left as they were."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import drain

from tether import Context, ManualClock, Tether, Worker
from tether.errors import ConfigurationError


def _apps(db_url: str, clock: ManualClock, renamed: bool) -> tuple[Tether, Tether]:
    v1 = Tether(db_url, clock=clock, version="v1")
    v2 = Tether(db_url, clock=clock, version="v2")

    @v1.task(id="report")
    async def report_v1(payload: Any, ctx: Context) -> str:
        await ctx.step("render", lambda: "r")
        await ctx.sleep("1h")
        return "v1"

    @v2.task(id="report")
    async def report_v2(payload: Any, ctx: Context) -> str:
        await ctx.step("render-pdf" if renamed else "render", lambda: "r")
        await ctx.sleep("1h")
        return "v2"

    return v1, v2


def test_a_run_whose_history_replays_moves_and_the_new_version_finishes_it(
        db_url: str, clock: ManualClock) -> None:
    v1, v2 = _apps(db_url, clock, renamed=False)
    handle = v1.trigger("report", {})
    drain(Worker(v1))
    clock.advance(3600)
    assert drain(Worker(v2)) == 0  # pinned to v1
    report = v2.runs.migrate(from_version="v1")
    assert report.moved == [handle.id] and report.passed and report.version == "v2"
    assert v2.runs.retrieve(handle.id).version == "v2"
    assert drain(Worker(v2)) == 1
    assert v2.runs.retrieve(handle.id).output == "v2"
    again = v2.runs.migrate([handle.id], to_version="v2", status="COMPLETED")
    assert again.already == [handle.id] and not again.moved
    v1.close()
    v2.close()


def test_a_run_whose_history_does_not_replay_is_refused_and_left_alone(
        db_url: str, clock: ManualClock) -> None:
    v1, v2 = _apps(db_url, clock, renamed=True)
    handle = v1.trigger("report", {})
    drain(Worker(v1))
    report = v2.runs.migrate([handle.id])
    assert not report.passed and report.moved == []
    [refused] = report.refused
    assert refused.run_id == handle.id and refused.verdict == "would_fail"
    assert 'stored step "render"' in (refused.detail or "")
    assert v2.runs.retrieve(handle.id).version == "v1"  # nothing changed
    with pytest.raises(ConfigurationError, match="say which runs"):
        v2.runs.migrate()
    v1.close()
    v2.close()
