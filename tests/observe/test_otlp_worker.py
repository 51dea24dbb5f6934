"""A real `tether worker` process exporting its spans over OTLP/HTTP (configured from the OTEL_*
environment only) to a receiver started here: the run triggered in this process, inside a span,
is one trace across both processes, with the same tree as in process. An app that installs its
own TracerProvider keeps it: the worker installs none from the OTEL_* variables. With tracing
on, the worker's log lines name the trace and span of what its runs log, isolated ones too."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import otlp_receiver
from trace_tree import build, tree

# the helpers of the acceptance tests, which start real workers the same way
sys.path.insert(0, str(Path(__file__).parent.parent / "acceptance"))
from acceptance_support import (
    READY_LINE,
    TETHER_EXE,
    assert_clean_error,
    make_env,
    otel_env,
    run_cli,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "apps" / "traced_app.py"


@contextlib.contextmanager
def worker_process(app_file: Path, env: dict[str, str],
                   log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`tether worker app_file`, its output in `log_path`, once it serves; stopped with SIGTERM
    (which flushes the spans it holds) after the block, and required to exit cleanly."""
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([str(TETHER_EXE), "worker", str(app_file)], cwd=app_file.parent,
                                env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: READY_LINE in log_path.read_text(errors="replace"), 20,
                       lambda: "the worker never served\n" + log_path.read_text())
            yield proc
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_worker_process_exports_the_run_s_trace(db_url: str, tmp_path: Path,
                                                  exporter: InMemorySpanExporter) -> None:
    app_file = tmp_path / APP.name
    shutil.copyfile(APP, app_file)
    client = Tether(db_url)
    client.storage.migrate()
    with otlp_receiver() as receiver, contextlib.closing(client):
        # (a span for every step, however quick)
        env = otel_env(db_url, receiver.endpoint, TETHER_TRACE_STEP_MIN_MS="0")
        log_path = tmp_path / "worker.log"
        with worker_process(app_file, env, log_path):
            with trace.get_tracer("test").start_as_current_span("caller") as root:
                handle = client.trigger("flaky", None)
            wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                            context=lambda: log_path.read_text(errors="replace"))
        received = receiver.received()
        shown = run_cli("runs", "show", handle.id, env=env, cwd=tmp_path)

    log = log_path.read_text(errors="replace")
    assert f"Trace     {root.get_span_context().trace_id:032x}" in shown.stdout, shown
    assert "exporting traces over OTLP/HTTP to " + receiver.endpoint in log, log
    assert received, "the worker exported no span\n" + log
    assert {s.service for s in received} == {"tether-worker"}
    trace_id = root.get_span_context().trace_id
    assert {s.trace_id for s in received} == {trace_id}, "the worker's spans join the caller's trace"
    ours = [(s.name, s.context.span_id, s.parent.span_id if s.parent else None,
             dict(s.attributes or {})) for s in exporter.get_finished_spans()]
    theirs = [(s.name, s.span_id, s.parent_id, s.attributes) for s in received]
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
    assert build(ours + theirs, root.get_span_context().span_id) == expected
    segment = next(s for s in received if s.name == "run flaky")
    assert segment.kind == 5  # SPAN_KIND_CONSUMER
    assert segment.attributes["tether.run_id"] == handle.id
    assert segment.attributes["messaging.system"] == "tether"


def test_the_app_s_own_provider_is_used_and_none_installed(db_url: str, tmp_path: Path) -> None:
    app_file = tmp_path / "own_provider_app.py"
    shutil.copyfile(APP.with_name(app_file.name), app_file)
    client = Tether(db_url)
    client.storage.migrate()
    with otlp_receiver() as receiver, contextlib.closing(client):
        env = otel_env(db_url, receiver.endpoint, OTEL_METRICS_EXPORTER="none",
                       TETHER_TRACE_STEP_MIN_MS="0")
        log_path = tmp_path / "worker.log"
        with worker_process(app_file, env, log_path):
            handle = client.trigger("hello", "you")
            wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                            context=lambda: log_path.read_text(errors="replace"))
        received = receiver.received()
    log = log_path.read_text(errors="replace")
    assert "exporting traces over OTLP" not in log, log
    assert received == [], "the worker installed an exporter of its own"
    spans = (tmp_path / "own-spans.txt").read_text().splitlines()
    assert sorted(spans) == ["run hello", "step greet"], spans


def test_the_worker_s_log_lines_name_the_run_s_trace_and_span(db_url: str,
                                                             tmp_path: Path) -> None:
    app_file = tmp_path / "logging_app.py"
    shutil.copyfile(APP.with_name(app_file.name), app_file)
    client = Tether(db_url)
    client.storage.migrate()
    with otlp_receiver() as receiver, contextlib.closing(client):
        env = otel_env(db_url, receiver.endpoint, OTEL_METRICS_EXPORTER="none")
        log_path = tmp_path / "worker.log"
        with worker_process(app_file, env, log_path) as proc:
            handles = {task: client.trigger(task) for task in ("logs", "isolated-logs")}
            for handle in handles.values():
                wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                                context=lambda: log_path.read_text(errors="replace"))
        received = receiver.received()
    log = log_path.read_text(errors="replace")
    for task, message in (("logs", "inside the run"), ("isolated-logs", "inside the isolated run")):
        [segment] = [s for s in received if s.name == f"run {task}"]
        line = f"INFO logging_app trace={segment.trace_id:032x} span={segment.span_id:016x}: "
        assert line + message in log, log
        pid = int(log.split(line + message + ", pid ")[1].split()[0])
        assert (pid == proc.pid) == (task == "logs"), "the isolated run logs in its child"
    # records outside any span keep the plain format
    assert "INFO tether.worker: worker " in log, log


@pytest.mark.parametrize(("variables", "fragment"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTLP protocol 'grpc' is not supported"),
])
def test_an_exporter_it_cannot_make_is_one_line(tmp_path: Path, variables: dict[str, str],
                                                fragment: str) -> None:
    app_file = tmp_path / APP.name
    shutil.copyfile(APP, app_file)
    env = {**make_env(tmp_path / "tether.db"), **variables}
    result = run_cli("worker", str(app_file), env=env, cwd=tmp_path, timeout=60)
    assert_clean_error(result, fragment)
