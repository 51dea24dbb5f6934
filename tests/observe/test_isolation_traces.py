"""Tracing an isolated attempt (isolation="process"), on each backend: the durable calls made
in the child process get their spans, made by the worker under the attempt's span, as they
would for an attempt in the worker's own process; a child run it triggers joins the trace; the
log records its code emits there carry the ids of the attempt's span, as in the worker."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tether import RunStatus, Worker

APP = Path(__file__).parent / "apps" / "isolated_traced_app.py"


def test_the_spans_of_an_isolated_attempt_s_steps_are_under_its_span(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    exporter: InMemorySpanExporter,
) -> None:
    shutil.copyfile(APP, tmp_path / APP.name)  # (its side file is written beside it)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TETHER_DATABASE_URL", db_url)
    sys.modules.pop("isolated_traced_app", None)
    module = importlib.import_module("isolated_traced_app")
    app = module.app
    try:
        handle = app.trigger("isolated-steps")
        worker = Worker(app, concurrency=2)
        try:
            asyncio.run(worker.run_until_idle())
        finally:
            assert worker.runner.isolation is not None
            worker.runner.isolation.close()
        run = app.runs.retrieve(handle.id)
        assert run.status == RunStatus.COMPLETED, run
        assert run.output == 13
    finally:
        app.close()
        sys.modules.pop("isolated_traced_app", None)

    finished = exporter.get_finished_spans()
    spans = {s.name: s for s in finished}
    # the first segment parks at trigger_and_wait; the second resumes and completes
    segments = [s for s in finished if s.name == "run isolated-steps"]
    assert len(segments) == 2, [s.name for s in finished]
    first = segments[0]
    child = spans["run plain-child"]  # the awaited child run joins the trace under the first
    assert child.context.trace_id == first.context.trace_id
    assert child.parent is not None and child.parent.span_id == first.context.span_id
    assert spans["step inner"].parent is not None
    assert spans["step inner"].parent.span_id == child.context.span_id
    segment = first
    for name in ("step one", "step flaky", "sleep sleep"):
        assert name in spans, sorted(spans)
        parent = spans[name].parent
        assert parent is not None and parent.span_id == segment.context.span_id, name
    flaky = spans["step flaky"]
    assert flaky.attributes is not None and flaky.attributes["tether.tries"] == 2
    outcomes = [s.attributes["tether.outcome"] for s in segments if s.attributes is not None]
    assert outcomes == ["WAITING", "COMPLETED"], outcomes

    # the task logged in the child, once per segment (the second replays step one and logs
    # again): each record carries the trace id and the id of the segment it was emitted in
    lines = (tmp_path / "isolated.log").read_text().splitlines()
    assert len(lines) == len(segments), lines
    for line, segment in zip(lines, sorted(segments, key=lambda s: s.start_time or 0),
                             strict=True):
        pid, trace_id, span_id, sampled, _ = line.split(" ", 4)
        assert int(pid) != os.getpid(), "logged in the child process"
        assert trace_id == format(segment.context.trace_id, "032x"), line
        assert span_id == format(segment.context.span_id, "016x"), line
        assert sampled == "True", line
