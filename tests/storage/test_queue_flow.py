"""Flow control at trigger time, on both backends (storage/flow.py, tether/queues.py): a queue's
max_queued (exact under triggers from two processes), the per-key strategies, paused keys."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether as tether_package
from tether import (
    BatchItem,
    ConfigurationError,
    Debounce,
    Queue,
    QueueFull,
    QueueNotFound,
    RunStatus,
    Tether,
)
from tether.engine.triggering import storable_text
from tether.storage.queue_records import QueueRecord

SRC = str(Path(tether_package.__file__).resolve().parent.parent)


@pytest.fixture
def app(db_url: str) -> Iterator[Tether]:
    app = Tether(db_url)

    @app.task(queue=Queue("short", max_queued=3))
    def short(payload: Any) -> None: ...

    @app.task(queue=Queue("newest", concurrency=1, on_key_limit="cancel_newest"))
    def newest(payload: Any) -> None: ...

    @app.task(queue=Queue("latest", concurrency=2, on_key_limit="cancel_in_progress"))
    def latest(payload: Any) -> None: ...

    @app.task(queue="plain")
    def plain(payload: Any) -> None: ...

    yield app
    app.close()


def statuses(app: Tether, task: str) -> list[str]:
    return sorted(r.status.value for r in app.runs.list(task=task, limit=100))


def reason(app: Tether, run_id: str) -> str:
    return str([e for e in app.runs.trace(run_id) if e.kind == "status"][-1].data["reason"])


# -- max_queued ---------------------------------------------------------------------------------
def test_a_trigger_past_max_queued_fails_with_the_count_and_stores_nothing(app: Tether) -> None:
    app.trigger("short", 1)
    app.trigger("short", 2, delay="1h")  # DELAYED counts: it has not started
    app.trigger("short", 3)
    with pytest.raises(QueueFull) as caught:
        app.trigger("short", 4, tags=["extra"])
    assert str(caught.value) == ("queue 'short' is full: 3 runs are waiting to start and its "
                                 "max_queued is 3; nothing was stored")
    assert (caught.value.queue, caught.value.count, caught.value.limit) == ("short", 3, 3)
    assert len(app.runs.list(task="short")) == 3
    assert app.runs.list(tag="extra") == []
    app.trigger("plain", 1)  # another queue is not held back


def test_a_batch_is_all_or_nothing(app: Tether) -> None:
    app.trigger("short", 0)
    with pytest.raises(QueueFull, match=r"1 runs are waiting .* max_queued is 3 \(this trigger "
                                        r"adds 3\)"):
        app.batch_trigger("short", [1, 2, 3])
    assert len(app.runs.list(task="short")) == 1
    assert len(app.batch_trigger("short", [1, BatchItem(2, tags=["b"])])) == 2
    assert len(app.runs.list(task="short")) == 3


def test_runs_that_started_or_ended_leave_room(app: Tether) -> None:
    runs = [app.trigger("short", n) for n in range(3)]
    app.runs.cancel(runs[0].id)
    app.trigger("short", 3)
    with pytest.raises(QueueFull):
        app.trigger("short", 4)


def test_a_repeated_idempotency_key_or_a_debounce_is_not_refused_when_full(app: Tether) -> None:
    first = app.trigger("short", 1, idempotency_key="k")
    app.trigger("short", 2, debounce=Debounce("d", "1m"))
    app.trigger("short", 3)
    assert app.trigger("short", 1, idempotency_key="k").id == first.id
    app.trigger("short", 4, debounce=Debounce("d", "1m"))  # pushes the same run back
    assert len(app.runs.list(task="short")) == 3


def test_a_queue_option_on_the_trigger_meets_that_queues_limit(app: Tether) -> None:
    app.trigger("short", 0)  # the queue's limit is stored once a trigger or worker declared it
    for n in range(2):
        app.trigger("plain", n, queue="short")
    with pytest.raises(QueueFull, match="queue 'short' is full"):
        app.trigger("plain", 3, queue="short")


def test_a_batch_across_a_limited_and_a_plain_queue_stores_each_run_once(app: Tether) -> None:
    """The plain queue's runs are stored by the first statement, which leaves the limited
    queue's out; those are then counted and stored: each run once, with its tags, and a batch
    that overfills the limited queue stores nothing at all."""
    app.trigger("short", 0)  # the queue's limit is stored once a trigger or worker declared it
    handles = app.batch_trigger("plain", [BatchItem(1, queue="short", tags=["a"]), 2,
                                          BatchItem(3, queue="short"), BatchItem(4, tags=["b"])])
    assert len({h.id for h in handles}) == 4
    assert sorted(r.queue for r in app.runs.list(task="plain")) == ["plain", "plain", "short",
                                                                    "short"]
    assert [r.queue for r in app.runs.list(tag="a")] == ["short"]
    assert [r.queue for r in app.runs.list(tag="b")] == ["plain"]
    with pytest.raises(QueueFull, match="queue 'short' is full"):
        app.batch_trigger("plain", [5, BatchItem(6, queue="short"), BatchItem(7, tags=["c"])])
    assert len(app.runs.list(task="plain")) == 4 and app.runs.list(tag="c") == []


ROUNDS = 80
TRIGGERS = """
import sys, time
from tether import QueueFull, Tether
app = Tether(sys.argv[1])

@app.task(queue="crowded")
def crowded(payload):
    return None

start, stored, full = float(sys.argv[2]), 0, 0
app.storage.list_queues()  # connected before the first round
for n in range(int(sys.argv[3])):
    time.sleep(max(0.0, start + n * 0.04 - time.time()))  # both processes at once
    try:
        crowded.trigger(n, queue=f"round-{n}")
        stored += 1
    except QueueFull:
        full += 1
print(stored, full)
"""


def test_max_queued_is_exact_under_triggers_from_two_processes(app: Tether, db_url: str) -> None:
    """Each round, both processes trigger into a queue of max_queued=1 at the same moment:
    exactly one of them may store its run."""
    from tether.storage.queue_records import QueueRecord

    app.storage.ensure_queues([QueueRecord(f"round-{n}", None, max_queued=1)
                               for n in range(ROUNDS)], time.time())
    env = {**os.environ, "PYTHONPATH": SRC}
    start = str(time.time() + 3.0)  # after both processes imported tether and connected
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRIGGERS), db_url, start,
                               str(ROUNDS)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(tuple(int(x) for x in out.split()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    runs = app.runs.list(task="crowded", limit=1000)
    per_queue = {r.queue for r in runs}
    assert len(runs) == len(per_queue) == ROUNDS, f"{len(runs)} runs in {len(per_queue)} queues"
    assert sum(stored for stored, _ in results) == ROUNDS
    assert sum(full for _, full in results) == ROUNDS
    assert all(stored > 0 for stored, _ in results), results  # both won rounds: they raced


# -- per-key strategies -------------------------------------------------------------------------
def test_cancel_newest_stores_the_new_run_canceled_when_its_key_is_full(app: Tether) -> None:
    first = app.trigger("newest", 1, concurrency_key="acme")
    dropped = app.trigger("newest", 2, concurrency_key="acme")
    other = app.trigger("newest", 3, concurrency_key="globex")
    assert first.status() == RunStatus.QUEUED
    assert dropped.status() == RunStatus.CANCELED
    assert other.status() == RunStatus.QUEUED
    assert reason(app, dropped.id) == (
        "canceled by queue 'newest' (on_key_limit='cancel_newest'): key 'acme' already has 1 "
        "runs queued or executing, its concurrency is 1")
    with pytest.raises(tether_package.RunFailed):
        dropped.result(timeout=5)  # its waiters hear of the end
    app.runs.cancel(first.id)
    assert app.trigger("newest", 4, concurrency_key="acme").status() == RunStatus.QUEUED


def test_cancel_newest_in_a_batch_keeps_the_first_runs(app: Tether) -> None:
    handles = app.batch_trigger("newest", [BatchItem(n, concurrency_key="k") for n in range(3)])
    assert [h.status() for h in handles] == [RunStatus.QUEUED, RunStatus.CANCELED,
                                             RunStatus.CANCELED]


def test_cancel_in_progress_keeps_the_newest_runs_of_the_key(app: Tether) -> None:
    a = app.trigger("latest", 1, concurrency_key="k")
    b = app.trigger("latest", 2, concurrency_key="k")
    elsewhere = app.trigger("latest", 3, concurrency_key="other")
    assert [a.status(), b.status()] == [RunStatus.QUEUED, RunStatus.QUEUED]
    c = app.trigger("latest", 4, concurrency_key="k")
    assert [a.status(), b.status(), c.status()] == [RunStatus.CANCELED, RunStatus.QUEUED,
                                                    RunStatus.QUEUED]
    assert elsewhere.status() == RunStatus.QUEUED
    assert reason(app, a.id) == (f"replaced by run {c.id} (queue 'latest', key 'k', "
                                 "on_key_limit='cancel_in_progress')")


# -- paused keys --------------------------------------------------------------------------------
def test_paused_keys_are_listed_extended_and_resumed(app: Tether) -> None:
    app.trigger("newest", 1, concurrency_key="acme")  # the queue is known once used
    app.trigger("short", 1)
    assert app.queues.paused_keys() == []
    paused = app.queues.pause_key("newest", "acme", "10m", reason="their API said 429")
    assert paused.reason == "their API said 429"
    assert timedelta(minutes=9) < paused.until - datetime.now(UTC) <= timedelta(minutes=10)
    app.queues.pause_key("newest", "acme", "1m")  # shorter: the longer pause is kept
    app.queues.pause_key("short", "", datetime.now(UTC) + timedelta(hours=1))
    found = app.queues.paused_keys()
    assert [(p.queue, p.key, p.reason) for p in found] == [
        ("newest", "acme", "their API said 429"), ("short", "", "paused by hand")]
    assert found[0].until == paused.until
    assert [p.key for p in app.queues.paused_keys("short")] == [""]
    assert app.queues.resume_key("newest", "acme") is True
    assert app.queues.resume_key("newest", "acme") is False
    assert [p.queue for p in app.queues.paused_keys()] == ["short"]


def test_a_pause_that_ended_is_not_listed(app: Tether) -> None:
    app.trigger("short", 1)
    app.storage.pause_key("short", "k", time.time() - 1, "over", time.time() - 60)
    assert app.queues.paused_keys() == []


def test_pausing_refuses_what_cannot_be(app: Tether) -> None:
    app.trigger("short", 1)
    with pytest.raises(QueueNotFound, match="no queue named 'nope'"):
        app.queues.pause_key("nope", "k", "1m")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        app.queues.pause_key("short", "k", datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match="in the future"):
        app.queues.pause_key("short", "k", datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(ConfigurationError, match="key must be"):
        app.queues.pause_key("short", "a\x00b", "1m")


def test_key_depths_rank_the_keys_with_most_runs_ready(app: Tether) -> None:
    for key, count in (("a", 1), ("b", 3), ("c", 2)):
        for n in range(count):
            app.trigger("plain", n, concurrency_key=key)
    app.trigger("plain", 9)
    depths = app.queues.key_depths("plain", limit=3)  # ties by key: "" (no key) before "a"
    assert [(d.key, d.queued, d.executing) for d in depths] == [("b", 3, 0), ("c", 2, 0),
                                                                 ("", 1, 0)]
    assert len(app.queues.key_depths("plain")) == 4


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(max_size=30), reason=st.text(max_size=60))
def test_any_key_and_reason_round_trip_or_are_refused_clearly(app: Tether, key: str,
                                                              reason: str) -> None:
    app.storage.ensure_queues([QueueRecord("short", None, max_queued=3)], time.time())
    if not (storable_text(key) and storable_text(reason)):
        with pytest.raises(ConfigurationError):
            app.queues.pause_key("short", key, "1h", reason=reason)
        return
    app.queues.pause_key("short", key, "1h", reason=reason)
    assert [(p.key, p.reason) for p in app.queues.paused_keys("short")] == [(key, reason)]
    assert app.queues.resume_key("short", key) is True
    assert app.queues.paused_keys() == []
