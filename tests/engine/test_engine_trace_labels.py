"""A run's spans are named once, in words, where people read them: the dashboard's timeline and
`tether runs show` (`sleep 5m`, `create token`, `wait for token waitpoint_...`, `trigger and
wait: build-report`), while the trace's own fields stay as the API gives them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from engine_helpers import drain

from tether import Context, ManualClock, RunStatus, Tether, TraceEvent, Worker
from tether.cli.format import run_details
from tether.server.dashboard import timeline
from tether.trace import span_label


def test_each_span_is_named_once(app: Tether, clock: ManualClock) -> None:
    @app.task(id="build-report")
    async def build_report(payload: Any) -> Any:
        return payload

    @app.task(id="pipeline")
    async def pipeline(payload: Any, ctx: Context) -> Any:
        await ctx.step("load", lambda: 1)
        await ctx.sleep(300)
        await ctx.sleep(5400, name="cool-down")
        token = await ctx.create_token(timeout="1h")
        decision = await ctx.wait_for_token(token)
        await ctx.trigger_and_wait(build_report, 1)
        await ctx.batch_trigger_and_wait(build_report, [2, 3])
        await ctx.trigger(build_report, 4)
        return decision

    worker = Worker(app)
    handle = pipeline.trigger(None)
    drain(worker)
    clock.advance(300)
    drain(worker)
    clock.advance(5400)
    drain(worker)
    [token] = app.tokens.list(status="WAITING")
    app.tokens.complete(token.id, "yes")
    for _ in range(4):
        drain(worker)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED
    trace = app.runs.trace(run.id)
    spans = [ev for ev in trace if ev.kind in ("step", "wait", "child")]

    labels = [span_label(ev) for ev in spans]
    assert sorted(labels) == sorted([
        "step load", "sleep 5m", "sleep 1h 30m (cool-down)", "create token",
        f"wait for token {token.id}", "trigger and wait: build-report",
        "batch trigger and wait: build-report", "trigger: build-report"])
    # the trace itself keeps the stored names and kinds; a token wait also names its token
    waited = next(ev for ev in spans if ev.data["kind"] == "wait_token")
    assert (waited.kind, waited.name, waited.data["token"]) == ("wait", "wait_for_token", token.id)
    assert {(ev.name, ev.data["kind"]) for ev in spans} >= {
        ("create_token", "token"), ("sleep", "sleep"),
        ("trigger_and_wait:build-report", "trigger_wait")}

    shown = "\n".join(run_details(run, trace))
    for label in labels:
        assert label in shown, label
    assert token.id in shown.split("create token", 1)[1].splitlines()[0]  # the token made
    for doubled in ("wait_token wait_for_token", "token create_token", "sleep sleep",
                    "trigger_wait trigger_and_wait"):
        assert doubled not in shown, doubled

    children = {c.id: c for c in app.runs.children(run.id)}
    rows = timeline.build(run, trace, children, clock.now()).rows
    named = {row.label: row for row in rows if row.kind in ("step", "wait", "child", "token")}
    short = token.id[:10] + "…" + token.id[-10:]
    assert {"load", "sleep 5m", "sleep 1h 30m (cool-down)", "create token",
            f"wait for token {short}", "trigger and wait: build-report",
            "batch trigger and wait: build-report", "trigger: build-report"} <= set(named)
    assert named["create token"].note == short
    assert named["batch trigger and wait: build-report"].note == "2 child runs"


def event(shown_as: str, name: str, **data: Any) -> TraceEvent:
    return TraceEvent(shown_as, datetime(2024, 5, 1, tzinfo=UTC), name, data=data)


@pytest.mark.parametrize(("ev", "label"), [
    (event("wait", "sleep#2", kind="sleep", detail={"until": 1714521600.25}), "sleep 250ms"),
    (event("wait", "sleep", kind="sleep", detail={"until": 1714521600 + 90061}), "sleep 1d 1h"),
    (event("wait", "sleep", kind="sleep"), "sleep"),
    (event("wait", "wait_for_token#2", kind="wait_token"), "wait for token"),  # stored before
    (event("child", "trigger:ns:mail#3", kind="trigger"), "trigger: ns:mail"),
    (event("step", "charge#2", kind="once"), "once charge#2"),
])
def test_labels_of_odd_spans(ev: TraceEvent, label: str) -> None:
    assert span_label(ev) == label


class _TickingClock(ManualClock):
    """A clock that moves 1 ms each time it is read: time passes between any two reads."""

    def now(self) -> float:
        now = super().now()
        self.advance(0.001)
        return now


def test_a_short_sleep_is_named_by_the_length_asked_for(db_url: str) -> None:
    """The sleep's row starts when the sleep was asked for, the time its wake time was computed
    from; read again later (time had passed), a sleep of 300 ms was named "sleep 299ms"."""
    app = Tether(db_url, clock=_TickingClock(1_000_000.0))

    @app.task(id="nap")
    async def nap(payload: Any, ctx: Context) -> Any:
        await ctx.sleep(0.3)  # in process (under the app's inline_sleep)
        return 1

    handle = nap.trigger(None)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    waits = [span_label(ev) for ev in app.runs.trace(handle.id) if ev.kind == "wait"]
    app.close()
    assert waits == ["sleep 300ms"]
