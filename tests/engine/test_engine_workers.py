"""The workers registry: `app.workers.list()` and the state it works out for each worker from what
workers record (registration, heartbeats, stalls, clean stops) and the runs ready for them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tether import ManualClock, Queue, RateLimit, Tether, workers
from tether.errors import ConfigurationError
from tether.storage.records import WorkerBeat, WorkerRecord
from tether.worker.housekeeping import worker_hostname
from tether.workers import GONE_ENV, IDLE_SECONDS, WorkerInfo

START = 1_000_000.0


def register(app: Tether, worker_id: str, *, started: float, tasks: list[str] | None = None,
             pid: int | None = None, concurrency: int = 2, host: str | None = None) -> None:
    app.storage.register_worker(WorkerRecord(
        worker_id, host or worker_hostname(), pid if pid is not None else 1, json.dumps(["*"]),
        concurrency, started, started, None, "v1",
        tasks=json.dumps(tasks) if tasks is not None else None))


def beat(app: Tether, worker_id: str, now: float, running: int = 0,
         last_claim_at: float | None = None, stalled_since: float | None = None,
         stalls: int = 0) -> None:
    app.storage.renew_leases(worker_id, [], now, 30.0,
                             WorkerBeat(running, last_claim_at, stalled_since, stalls))


def by_id(app: Tether, all: bool = False) -> dict[str, WorkerInfo]:
    return {w.id: w for w in app.workers.list(all=all)}


def a_dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer exists, not even as a zombie
    return proc.pid


def test_states_from_heartbeats_stalls_stops_and_silence(
        app: Tether, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GONE_ENV, raising=False)
    clock.set(START)
    here = 1  # pid 1 exists on every machine: a live process
    for worker_id in ("w-live", "w-stalled", "w-stopped", "w-silent", "w-killed", "w-far"):
        register(app, worker_id, started=START, pid=here, host="elsewhere")
    register(app, "w-killed-here", started=START, pid=a_dead_pid())
    clock.set(START + 50)
    for worker_id in ("w-live", "w-stalled", "w-stopped", "w-killed-here"):
        beat(app, worker_id, START + 50, running=1, last_claim_at=START + 49)
    app.storage.mark_stalled("w-stalled", START + 48, 3)
    app.storage.stop_worker("w-stopped", START + 50)
    clock.set(START + 70)  # w-silent and w-killed: 70 s without a heartbeat (lease 30 s: 90 s)
    found = by_id(app)
    assert {k: w.state for k, w in found.items()} == {
        "w-live": "live", "w-stalled": "stalled", "w-stopped": "stopped", "w-silent": "live",
        "w-killed": "live", "w-far": "live", "w-killed-here": "gone"}
    stalled = found["w-stalled"]
    assert stalled.stalls == 3 and stalled.stalled_since is not None
    assert stalled.stalled_since.timestamp() == START + 48
    assert stalled.running == 1 and stalled.last_claim_at is not None
    assert stalled.last_claim_at.timestamp() == START + 49
    assert found["w-stopped"].stopped_at is not None and found["w-live"].stopped_at is None
    assert found["w-live"].queues == ["*"] and found["w-live"].version == "v1"

    clock.set(START + 91)  # past max(60, 3 * 30) since the last heartbeat
    assert by_id(app)["w-silent"].state == "gone"
    app.storage.mark_stalled("w-stalled", None, 3)  # the loop answers again
    beat(app, "w-stalled", START + 91, stalls=3)
    assert by_id(app)["w-stalled"].state == "live" and by_id(app)["w-stalled"].stalls == 3

    monkeypatch.setenv(GONE_ENV, "5")  # a shorter horizon, e.g. for a test or a small fleet
    beat(app, "w-live", START + 91)
    clock.set(START + 97)
    assert by_id(app)["w-live"].state == "gone"
    monkeypatch.setenv(GONE_ENV, "soon")
    with pytest.raises(ConfigurationError, match=GONE_ENV):
        app.workers.list()


def test_old_workers_are_listed_only_when_all_are_asked_for(app: Tether, clock: ManualClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GONE_ENV, raising=False)
    register(app, "w-old", started=START - 3 * 86400)
    register(app, "w-new", started=START - 10)
    clock.set(START)
    assert list(by_id(app)) == ["w-new"]
    listed = app.workers.list(all=True)
    assert [w.id for w in listed] == ["w-new", "w-old"]  # the newest first
    assert listed[1].state == "gone"


def test_a_worker_with_free_places_that_claims_nothing_while_runs_wait_is_idle_with_work(
        app: Tether, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GONE_ENV, raising=False)

    @app.task(id="mine", queue=Queue("mine", concurrency=1))
    async def mine(payload: Any) -> None:
        return None

    @app.task(id="theirs")
    async def theirs(payload: Any) -> None:
        return None

    clock.set(START)
    register(app, "w-mine", started=START, tasks=["mine"], pid=1, host="elsewhere")
    register(app, "w-other", started=START, tasks=["other"], pid=1, host="elsewhere")
    register(app, "w-full", started=START, tasks=["mine"], pid=1, host="elsewhere", concurrency=1)
    handle = app.trigger("mine", None)
    app.trigger("theirs", None)

    def states(now: float) -> dict[str, str]:
        clock.set(now)
        for worker_id in ("w-mine", "w-other"):
            beat(app, worker_id, now, last_claim_at=None)
        beat(app, "w-full", now, running=1, last_claim_at=START)
        return {k: w.state for k, w in by_id(app).items()}

    # ready for less than IDLE_SECONDS: nobody is idle yet
    assert states(START + IDLE_SECONDS - 1) == {"w-mine": "live", "w-other": "live",
                                                "w-full": "live"}
    # ready long enough: the worker serving "mine" with a free place should have taken it; the
    # one serving other tasks and the one with no free place are fine
    assert states(START + IDLE_SECONDS + 1) == {"w-mine": "idle-with-work", "w-other": "live",
                                                "w-full": "live"}
    app.storage.set_queue_paused("mine", True, START)  # a paused queue's runs are not work
    assert states(START + IDLE_SECONDS + 2)["w-mine"] == "live"
    app.storage.set_queue_paused("mine", False, START)
    beat(app, "w-mine", START + IDLE_SECONDS + 3, last_claim_at=START + IDLE_SECONDS + 3)
    assert by_id(app)["w-mine"].state == "live"  # it just claimed
    app.trigger("mine", None)
    now = START + 3 * IDLE_SECONDS
    [claimed] = app.storage.claim_runs("w-x", ["mine"], None, 1, now, 30.0)
    assert claimed.record.id == handle.id
    # the other run is ready, but the queue is at its limit: no worker could take it
    assert states(now)["w-mine"] == "live"


def test_runs_held_back_by_a_rate_or_a_paused_key_are_not_work(
        app: Tether, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A free worker whose ready runs wait for their queue's rate or a paused key is not
    idle-with-work: no claim could give it those runs."""
    monkeypatch.delenv(GONE_ENV, raising=False)

    @app.task(id="paced", queue=Queue("paced", rate_limit=RateLimit(1, "1h")))
    async def paced(payload: Any) -> None:
        return None

    @app.task(id="keyed", queue=Queue("keyed"))
    async def keyed(payload: Any) -> None:
        return None

    clock.set(START)
    for task in ("paced", "keyed"):
        register(app, f"w-{task}", started=START, tasks=[task], pid=1, host="elsewhere")
    for n in range(2):
        app.trigger("paced", n)
        app.trigger("keyed", n, concurrency_key="tenant-a")
    # the first run starts: the rate's one run an hour
    assert len(app.storage.claim_runs("w-paced", ["paced"], None, 5, START, 3600.0)) == 1
    app.storage.pause_key("keyed", "tenant-a", START + 3600, "its API is down", START)
    now = START + 3 * IDLE_SECONDS
    clock.set(now)
    for task in ("paced", "keyed"):  # what their claims find now: nothing
        assert app.storage.claim_runs(f"w-{task}", [task], None, 5, now, 3600.0) == []
        beat(app, f"w-{task}", now, running=0, last_claim_at=START)
    assert {k: w.state for k, w in by_id(app).items()} == {"w-paced": "live", "w-keyed": "live"}
    # the key's pause over, its runs are work again: a worker that does not take them is idle
    app.storage.resume_key("keyed", "tenant-a")
    assert by_id(app)["w-keyed"].state == "idle-with-work"


def test_the_list_holds_the_workers_seen_last_up_to_its_limit(
        app: Tether, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker records are kept (a fleet that restarts often leaves many): a list, even of all
    of them, holds at most LISTED, those seen last, so a worker that has run for long and
    heartbeats still is there; shown the newest first."""
    monkeypatch.delenv(GONE_ENV, raising=False)
    monkeypatch.setattr(workers, "LISTED", 3)
    register(app, "w-old-live", started=START - 30 * 86400, pid=1, host="elsewhere")
    for n in range(5):
        register(app, f"w-{n}", started=START - 3 * 86400 + n)
    clock.set(START)
    beat(app, "w-old-live", START)
    assert [w.id for w in app.workers.list(all=True)] == ["w-4", "w-3", "w-old-live"]
    register(app, "w-new", started=START - 10)
    assert [w.id for w in app.workers.list()] == ["w-new", "w-old-live"]
    assert [w.id for w in app.workers.list(all=True)] == ["w-new", "w-4", "w-old-live"]
    assert {w.id: w.state for w in app.workers.list(all=True)}["w-old-live"] == "live"
