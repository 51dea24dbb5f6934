"""Schedules with a ManualClock, on each backend: firing, missed slots, deduplication, activation,
declared schedules, and the compare-and-set that lets one firer win."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import drain
from pydantic import BaseModel

from tether import (
    ConfigurationError,
    ManualClock,
    Run,
    RunStatus,
    Schedule,
    ScheduleNotFound,
    Tether,
    UnknownTask,
    Worker,
)
from tether.cron import iso
from tether.schedules import declared_key
from tether.worker.scheduler import Scheduler, schedule_tag

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0


class Strict(BaseModel):
    n: int


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def received(app: Tether) -> list[Any]:
    seen: list[Any] = []

    @app.task(id="tick")
    async def tick(payload: Any) -> Any:
        seen.append(payload)
        return payload["timestamp"]

    return seen


def fire_at(app: Tether, clock: ManualClock, at: float) -> int:
    clock.set(at)
    return Scheduler(app).fire_due()


def scheduled_runs(app: Tether, schedule: Schedule) -> list[Run]:
    return list(reversed(app.runs.list(tag=schedule_tag(schedule.id), limit=100)))


def test_a_slot_fires_once_with_the_schedule_payload(app: Tether, clock: ManualClock,
                                                      received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="* * * * *", external_id="cust-1")
    assert schedule.next_run_at is not None and schedule.next_run_at.timestamp() == T0 + 60
    assert schedule.active and not schedule.declared and schedule.timezone == "UTC"
    assert fire_at(app, clock, T0 + 59) == 0
    assert fire_at(app, clock, T0 + 60.4) == 1
    assert Scheduler(app).fire_due() == 0  # the same slot again: nothing
    [run] = scheduled_runs(app, schedule)
    assert run.payload == {"timestamp": iso(T0 + 60), "last_timestamp": None, "timezone": "UTC",
                           "schedule_id": schedule.id, "external_id": "cust-1"}
    assert run.tags == [schedule_tag(schedule.id)] and run.queue == "tick"
    drain(Worker(app))
    assert app.runs.retrieve(run.id).status == RunStatus.COMPLETED
    assert received == [run.payload]

    assert fire_at(app, clock, T0 + 121) == 1
    runs = scheduled_runs(app, schedule)
    assert [r.payload["timestamp"] for r in runs] == [iso(T0 + 60), iso(T0 + 120)]
    assert runs[1].payload["last_timestamp"] == iso(T0 + 60)
    stored = app.schedules.retrieve(schedule.id)
    assert stored.last_run_at is not None and stored.last_run_at.timestamp() == T0 + 120
    assert stored.next_run_at is not None and stored.next_run_at.timestamp() == T0 + 180


def test_missed_slots_fire_once_late_with_the_latest_slot(app: Tether, clock: ManualClock,
                                                           received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="0 * * * *")
    # everything was down from 00:00 to 05:10: the slots 01:00 ... 05:00 were missed
    assert fire_at(app, clock, T0 + 5 * HOUR + 600) == 1
    assert Scheduler(app).fire_due() == 0
    [run] = scheduled_runs(app, schedule)
    assert run.payload["timestamp"] == iso(T0 + 5 * HOUR)
    assert app.schedules.retrieve(schedule.id).next_run_at.timestamp() == T0 + 6 * HOUR  # type: ignore[union-attr]
    assert fire_at(app, clock, T0 + 6 * HOUR) == 1
    assert scheduled_runs(app, schedule)[-1].payload["last_timestamp"] == iso(T0 + 5 * HOUR)


def test_missed_skip_goes_to_the_next_slot(app: Tether, clock: ManualClock,
                                           received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="0 * * * *", missed="skip")
    assert schedule.missed == "skip"
    assert fire_at(app, clock, T0 + 5 * HOUR + 600) == 0  # 10 minutes late: skipped
    assert app.schedules.retrieve(schedule.id).next_run_at.timestamp() == T0 + 6 * HOUR  # type: ignore[union-attr]
    assert scheduled_runs(app, schedule) == []
    assert fire_at(app, clock, T0 + 6 * HOUR + 1) == 1  # on time
    # earlier slots missed, but the latest one is only seconds late: it fires
    assert fire_at(app, clock, T0 + 9 * HOUR + 5) == 1
    assert [r.payload["timestamp"] for r in scheduled_runs(app, schedule)] == [
        iso(T0 + 6 * HOUR), iso(T0 + 9 * HOUR)]


def test_create_is_idempotent_by_deduplication_key(app: Tether, clock: ManualClock,
                                                   received: list[Any]) -> None:
    first = app.schedules.create(task="tick", cron="0 * * * *", deduplication_key="k")
    clock.advance(600)
    again = app.schedules.create(task="tick", cron="0 * * * *", deduplication_key="k",
                                 external_id="x")
    assert again.id == first.id and again.next_run_at == first.next_run_at
    assert again.external_id == "x" and again.deduplication_key == "k"
    changed = app.schedules.create(task="tick", cron="30 * * * *", timezone="Asia/Kolkata",
                                   deduplication_key="k")
    assert changed.id == first.id and changed.cron == "30 * * * *"
    assert changed.timezone == "Asia/Kolkata"
    assert changed.next_run_at is not None and changed.next_run_at.timestamp() == T0 + HOUR
    other = app.schedules.create(task="tick", cron="0 * * * *")
    assert [s.id for s in app.schedules.list()] == [first.id, other.id]
    assert app.schedules.list(task="nothing") == []


def test_deactivate_stops_firing_and_activate_starts_from_the_next_slot(
        app: Tether, clock: ManualClock, received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="0 * * * *")
    off = app.schedules.deactivate(schedule.id)
    assert not off.active and off.next_run_at is None
    assert fire_at(app, clock, T0 + 3 * HOUR + 1) == 0
    # a create with no deduplication key is a new schedule; the inactive one stays inactive
    on = app.schedules.activate(schedule.id)
    assert on.active and on.next_run_at is not None
    assert on.next_run_at.timestamp() == T0 + 4 * HOUR  # slots passed while inactive: not fired
    assert Scheduler(app).fire_due() == 0
    assert fire_at(app, clock, T0 + 4 * HOUR) == 1


def test_delete_and_unknown_ids(app: Tether, received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="0 * * * *")
    app.schedules.delete(schedule.id)
    for call in (app.schedules.retrieve, app.schedules.delete, app.schedules.activate,
                 app.schedules.deactivate):
        with pytest.raises(ScheduleNotFound, match=f"no schedule with id '{schedule.id}'"):
            call(schedule.id)
    assert app.schedules.list() == []


def test_create_checks_the_task_and_the_expression(app: Tether, received: list[Any]) -> None:
    with pytest.raises(UnknownTask):
        app.schedules.create(task="nope", cron="0 * * * *")
    with pytest.raises(ConfigurationError, match="schedule of task 'tick': invalid cron"):
        app.schedules.create(task="tick", cron="0 25 * * *")
    with pytest.raises(ConfigurationError, match="unknown timezone"):
        app.schedules.create(task="tick", cron="0 * * * *", timezone="Nowhere/Town")


def test_only_one_of_two_racing_firers_creates_the_run(db_url: str, app: Tether, clock: ManualClock,
                                                      received: list[Any]) -> None:
    schedule = app.schedules.create(task="tick", cron="* * * * *")
    other = Tether(db_url, clock=clock)  # a second process: its own storage handle
    other.tasks = app.tasks
    try:
        clock.set(T0 + 61)
        [seen_by_a] = app.storage.due_schedules(clock.now(), 10)
        [seen_by_b] = other.storage.due_schedules(clock.now(), 10)
        won = [Scheduler(app).fire(seen_by_a, clock.now()),
               Scheduler(other).fire(seen_by_b, clock.now())]
    finally:
        other.close()
    assert sorted(won) == [False, True]
    assert len(scheduled_runs(app, schedule)) == 1


def test_a_slot_the_task_rejects_is_skipped(app: Tether, clock: ManualClock) -> None:
    @app.task(id="strict")
    async def strict(payload: Strict) -> None: ...

    schedule = app.schedules.create(task="strict", cron="* * * * *")
    assert fire_at(app, clock, T0 + 60) == 0
    assert scheduled_runs(app, schedule) == []
    assert app.schedules.retrieve(schedule.id).next_run_at.timestamp() == T0 + 120  # type: ignore[union-attr]


def test_declared_schedules_follow_the_code(db_url: str, app: Tether, clock: ManualClock) -> None:
    @app.task(id="report", cron="0 9 * * *", timezone="Europe/London")
    async def report(payload: Any) -> None: ...

    Scheduler(app).sync_declared(clock.now())
    [declared] = app.schedules.list()
    assert declared.declared and declared.active and declared.deduplication_key == "task:report"
    assert declared.next_run_at is not None and declared.next_run_at.timestamp() == T0 + 9 * HOUR
    clock.advance(10 * HOUR)  # a worker restarts after the 09:00 slot passed unfired
    Scheduler(app).sync_declared(clock.now())
    assert app.schedules.list() == [declared]  # same schedule, slot kept: it still fires
    assert Scheduler(app).fire_due() == 1

    newer = Tether(db_url, clock=clock)  # the next deploy: cron= removed from the task
    newer.task(id="report")(lambda payload: None)
    try:
        Scheduler(newer).sync_declared(clock.now())
        [retired] = newer.schedules.list()
        assert (retired.id, retired.active, retired.declared) == (declared.id, False, False)
        assert retired.deduplication_key == declared_key("report")
    finally:
        newer.close()
    Scheduler(app).sync_declared(clock.now())  # declared again: active again
    [back] = app.schedules.list()
    assert back.id == declared.id and back.active and back.declared
    app.schedules.deactivate(back.id)  # deactivated by hand: a restart leaves it inactive
    Scheduler(app).sync_declared(clock.now())
    assert not app.schedules.retrieve(back.id).active
