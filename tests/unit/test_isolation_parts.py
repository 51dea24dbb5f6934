"""Process isolation's parts without processes: @app.task(isolation=..., memory_limit=...)
validated when the decorator runs; the words a run's error uses for a dead child process and a
memory limit; how a child finds the app; the spans a child records; the messages crossing the
pipe (a property test with users' JSON values)."""

from __future__ import annotations

import signal
import sys
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import Tether
from tether.errors import ConfigurationError
from tether.isolation.messages import exit_reason, shown_size
from tether.isolation.pool import app_source
from tether.limits import parse_size
from tether.task import IN_PROCESS, IN_WORKER


def _noop(payload: Any) -> None:
    return None


def test_the_default_runs_attempts_in_the_workers_process() -> None:
    app = Tether("sqlite:///unused.db")
    task = app.task(id="plain")(_noop)
    assert task.isolation == IN_WORKER == "none"
    assert task.memory_limit is None


def test_a_process_isolated_task_takes_a_memory_limit_as_a_size() -> None:
    app = Tether("sqlite:///unused.db")
    task = app.task(id="iso", isolation="process", memory_limit="2GB")(_noop)
    assert task.isolation == IN_PROCESS
    assert task.memory_limit == 2_000_000_000
    assert app.task(id="iso2", isolation="process", memory_limit=1024)(_noop).memory_limit == 1024


@pytest.mark.parametrize(("options", "fragment"), [
    ({"isolation": "thread"}, "isolation must be 'none'"),
    ({"isolation": "PROCESS"}, "got 'PROCESS'"),
    ({"memory_limit": "1GB"}, "memory_limit needs isolation='process'"),
    ({"isolation": "process", "memory_limit": "2 parsecs"}, "memory_limit of task 'bad'"),
    ({"isolation": "process", "memory_limit": 0}, "at least 1 byte"),
    ({"isolation": "process", "memory_limit": True}, "memory_limit of task 'bad'"),
])
def test_bad_isolation_options_are_refused_with_a_clear_message(
    options: dict[str, Any], fragment: str,
) -> None:
    app = Tether("sqlite:///unused.db")
    with pytest.raises(ConfigurationError) as raised:
        app.task(id="bad", **options)(_noop)
    assert fragment in str(raised.value)
    assert "task 'bad'" in str(raised.value)


@given(st.integers(min_value=1, max_value=2**50))
def test_a_limit_is_shown_as_a_size_that_reads_back_the_same(size: int) -> None:
    shown = shown_size(size)
    assert parse_size(shown.replace(",", "").removesuffix(" bytes"), "x") == size


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(["KB", "MB", "GB", "KiB",
                                                                     "MiB", "GiB"]))
def test_a_limit_written_with_a_unit_is_shown_as_written(count: int, unit: str) -> None:
    app = Tether("sqlite:///unused.db")
    task = app.task(id="iso", isolation="process", memory_limit=f"{count}{unit}")(_noop)
    assert task.memory_limit is not None
    assert parse_size(shown_size(task.memory_limit), "x") == task.memory_limit


def test_how_a_child_process_ended_is_named() -> None:
    assert exit_reason(-signal.SIGSEGV) == "died of SIGSEGV (signal 11)"
    assert exit_reason(-signal.SIGABRT) == "died of SIGABRT (signal 6)"
    assert "memory runs out" in exit_reason(-signal.SIGKILL)
    assert exit_reason(3) == "exited with status 3"
    assert exit_reason(None) == "stopped answering"


def test_children_import_the_app_by_the_module_that_holds_it() -> None:
    module = types.ModuleType("tether_test_iso_module")
    app = Tether("sqlite:///unused.db")
    module.my_app = app  # type: ignore[attr-defined]

    def work(payload: Any) -> None:
        return None

    work.__module__ = module.__name__
    app.task(id="w", isolation="process")(work)
    sys.modules[module.__name__] = module
    try:
        assert app_source(app) == "tether_test_iso_module:my_app"
        del module.my_app  # type: ignore[attr-defined]
        with pytest.raises(ConfigurationError, match="global of the module"):
            app_source(app)
    finally:
        del sys.modules[module.__name__]


class _Spans:
    """A stand-in for the worker's RunTrace: what replay_spans made."""

    def __init__(self) -> None:
        self.made: list[tuple[Any, ...]] = []

    def call(self, kind: str, key: str, started: float, ended: float, tries: int = 1,
             error: BaseException | None = None) -> None:
        self.made.append(("call", kind, key, started, ended, tries, error))

    def wait(self, name: str, kind: str, started: float, ended: float, earlier: bool,
             error: str | None = None) -> None:
        self.made.append(("wait", name, kind, started, ended, earlier, error))

    def child_trigger(self, task_id: str, queue: str, runs: list[Any]) -> None:
        return None


def test_spans_recorded_in_a_child_are_made_alike_in_the_worker() -> None:
    import pickle

    from tether.isolation.messages import SpanLog, replay_spans

    recorded = SpanLog()
    recorded.call("step", "fetch", 1.0, 2.0, 3, KeyError("gone"))
    recorded.call("once", "pay", 2.0, 2.5)
    recorded.wait("sleep nap", "sleep", 3.0, 4.0, False)
    assert recorded.child_trigger("t", "q", []) is None
    spans = _Spans()
    replay_spans(spans, pickle.loads(pickle.dumps(recorded.spans)))  # as it crosses the pipe
    (_, kind, key, started, ended, tries, error), second, third = spans.made
    assert (kind, key, started, ended, tries) == ("step", "fetch", 1.0, 2.0, 3)
    assert type(error).__name__ == "KeyError" and str(error) == str(KeyError("gone"))
    assert second == ("call", "once", "pay", 2.0, 2.5, 1, None)
    assert third == ("wait", "sleep nap", "sleep", 3.0, 4.0, False, None)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(payload=_json, output=_json, metadata=st.dictionaries(st.text(max_size=8), _json,
                                                              max_size=3))
def test_a_job_and_its_end_cross_the_pipe_unchanged(payload: Any, output: Any,
                                                    metadata: dict[str, Any]) -> None:
    """What the worker and a child send each other (users' payloads, outputs, metadata and
    step results, as stored text) arrives as it was sent, over a real socket pair."""
    import json
    import socket
    from dataclasses import fields
    from multiprocessing.connection import Connection

    from tether.engine import states
    from tether.isolation.messages import Ended, Job
    from tether.storage.records import Lease, RunRecord, StepRecord

    values: dict[str, Any] = {f.name: None for f in fields(RunRecord)}
    values.update(id="run_1", task_id="t", queue="t", status="EXECUTING",
                  payload=json.dumps(payload), metadata=json.dumps(metadata), tags="[]",
                  idempotency_active=0, concurrency_key="", priority=0, attempts=1,
                  max_attempts=3, retry="{}", available_at=1.0, depth=0, created_at=1.0,
                  updated_at=1.0)
    record = RunRecord(**values)
    step = StepRecord("s", "s", "step", "COMPLETED", json.dumps(output), None, 1, 1.0, 2.0, 1)
    job = Job("t", record, Lease("run_1", "token", 1, "worker_1"), {"s": step}, 12.5, 1024)
    ended = Ended(states.succeeded(json.dumps(output)), None, [step], False,
                  [("call", ("step", "s", 1.0, 2.0, 1, None))])
    ours, theirs = socket.socketpair()
    sender, receiver = Connection(ours.detach()), Connection(theirs.detach())
    try:
        sender.send(job)
        sender.send(ended)
        assert receiver.recv() == job
        assert receiver.recv() == ended
    finally:
        sender.close()
        receiver.close()
