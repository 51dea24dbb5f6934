"""Traces with an in-memory exporter, on each backend: a run with a retry, three steps, a sleep
and a child is one trace under the span that triggered it, with the tree docs/observability.md
draws; log records inside a run carry its ids; without a provider nothing is stored or made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trace_tree import build, reset_tracer_provider, tree

from tether import Context, ManualClock, Retry, RunStatus, Tether, Worker
from tether.observe import tracing

START = 1_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(db_url: str, clock: ManualClock) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock)
    yield app
    app.close()


def drain(worker: Worker) -> int:
    return asyncio.run(worker.run_until_idle())


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def define(app: Tether) -> Any:
    @app.task(id="child")
    async def child(payload: Any, ctx: Context) -> int:
        return int(await ctx.step("inner", lambda: payload * 2))

    @app.task(id="flaky", retry=Retry(max_attempts=2, min_delay=1.0, jitter=False))
    async def flaky(payload: Any, ctx: Context) -> int:
        one = await ctx.step("one", lambda: 1)
        logging.getLogger("test.traces").info("attempt %d", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        two = await ctx.step("two", lambda: 2)
        await ctx.sleep(60)
        three = await ctx.step("three", lambda: 3)
        doubled = await ctx.trigger_and_wait(child, 5)
        return int(one + two + three + doubled)

    return flaky


def spans_of(exporter: InMemorySpanExporter) -> list[tuple[str, int, int | None, dict[str, Any]]]:
    return [(s.name, s.context.span_id, s.parent.span_id if s.parent else None,
             dict(s.attributes or {})) for s in exporter.get_finished_spans()]


def test_a_run_is_one_trace_under_its_trigger(app: Tether, clock: ManualClock,
                                              exporter: InMemorySpanExporter) -> None:
    flaky = define(app)
    caller = trace.get_tracer("test")
    with caller.start_as_current_span("caller") as root:
        handle = flaky.trigger(None)
    captured = Captured()
    logger = logging.getLogger("test.traces")
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    worker = Worker(app)
    try:
        assert drain(worker) == 1  # attempt 1 fails after step one
        clock.advance(1.0)
        assert drain(worker) == 1  # attempt 2: step two, then parks on the sleep
        clock.advance(60.0)
        drain(worker)  # step three, the child triggered and run, the parent's last segment
    finally:
        logger.removeHandler(captured)
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    assert app.runs.retrieve(handle.id).output == 1 + 2 + 3 + 10

    finished = exporter.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}, "one trace"
    expected = tree(
        "caller",
        tree("trigger flaky",
             tree("run flaky a1 QUEUED", tree("step one")),
             tree("run flaky a2 WAITING", tree("step two")),
             tree("sleep sleep"),
             tree("run flaky a2 WAITING", tree("step three"),
                  tree("trigger child", tree("run child a1 COMPLETED", tree("step inner")))),
             tree("trigger_and_wait:child"),
             tree("run flaky a2 COMPLETED")))
    assert build(spans_of(exporter), root.get_span_context().span_id) == expected

    by_name = {s.name: s for s in finished}
    trigger_span = by_name["trigger flaky"]
    assert trigger_span.kind == trace.SpanKind.PRODUCER
    assert trigger_span.attributes is not None
    assert trigger_span.attributes["tether.run_id"] == handle.id
    assert trigger_span.attributes["messaging.destination.name"] == "flaky"
    segments = [s for s in finished if s.name == "run flaky"]
    assert all(s.kind == trace.SpanKind.CONSUMER for s in segments)
    failed = [s for s in segments if s.attributes and s.attributes["tether.attempt"] == 1]
    assert failed[0].status.status_code == trace.StatusCode.ERROR
    for span in segments:
        assert span.attributes is not None
        assert span.attributes["tether.run_id"] == handle.id
        assert span.attributes["tether.task"] == "flaky"
        assert span.attributes["tether.queue"] == "flaky"
        assert span.attributes["messaging.system"] == "tether"
    # the run's stored context is the trigger span's
    stored = app.storage.get_run(handle.id)
    assert stored is not None and stored.trace_context is not None
    assert stored.trace_context.split("-")[2] == format(trigger_span.context.span_id, "016x")
    # the log record of each attempt carries the ids of the segment it was emitted in
    segment_ids = {format(s.context.span_id, "016x") for s in segments}
    assert len(captured.records) >= 2
    for record in captured.records:
        assert record.otelTraceID == format(trace_id, "032x")  # type: ignore[attr-defined]
        assert record.otelSpanID in segment_ids  # type: ignore[attr-defined]


def test_a_run_triggered_without_a_trace_keeps_one_trace(app: Tether, clock: ManualClock,
                                                          exporter: InMemorySpanExporter) -> None:
    flaky = define(app)
    provider = trace.get_tracer_provider()
    reset_tracer_provider()
    handle = flaky.trigger(None)  # triggered while tracing is off: no context stored
    trace.set_tracer_provider(provider)
    stored = app.storage.get_run(handle.id)
    assert stored is not None and stored.trace_context is None
    worker = Worker(app)
    drain(worker)
    clock.advance(1.0)
    drain(worker)
    clock.advance(60.0)
    drain(worker)
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    segments = [s for s in exporter.get_finished_spans() if s.name == "run flaky"]
    assert len(segments) == 4
    assert len({s.context.trace_id for s in segments}) == 1, "retries and resumes: one trace"


def test_off_without_a_provider(app: Tether, clock: ManualClock) -> None:
    flaky = define(app)
    handle = flaky.trigger(None)
    worker = Worker(app)
    drain(worker)
    clock.advance(1.0)
    drain(worker)
    clock.advance(60.0)
    drain(worker)
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    stored = app.storage.get_run(handle.id)
    assert stored is not None and stored.trace_context is None


def test_quick_steps_are_counted_on_their_segment(app: Tether, clock: ManualClock,
                                                 exporter: InMemorySpanExporter,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "STEP_MIN", 0.001)  # the default: 1 ms

    @app.task(id="quick")
    async def quick(payload: Any, ctx: Context) -> None:
        for i in range(3):
            await ctx.step("fast", int, i)
        await ctx.step("slow", clock.advance, 0.002)  # takes 2 ms by the app's clock
        await ctx.once("send", lambda: None)  # a once always has its span

    quick.trigger(None)
    drain(Worker(app))
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["once send", "run quick", "step slow", "trigger quick"]
    [segment] = [s for s in exporter.get_finished_spans() if s.name == "run quick"]
    assert segment.attributes is not None and segment.attributes["tether.quick_steps"] == 3


def test_a_deferred_segment_is_not_an_error(app: Tether, clock: ManualClock,
                                           exporter: InMemorySpanExporter) -> None:
    from tether import RetryAfter

    @app.task(id="pushed")
    async def pushed(payload: Any, ctx: Context) -> str:
        if not app.storage.list_attempts(ctx.run_id):
            raise RetryAfter(5, "slow down")
        return "ok"

    pushed.trigger(None)
    worker = Worker(app)
    drain(worker)
    clock.advance(5)
    drain(worker)
    segments = [s for s in exporter.get_finished_spans() if s.name == "run pushed"]
    assert len(segments) == 2
    first = min(segments, key=lambda s: s.start_time or 0)
    assert first.status.status_code != trace.StatusCode.ERROR
    assert [e.name for e in first.events] == ["deferred"]
