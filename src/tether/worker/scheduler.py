"""Firing schedules: every worker's housekeeping thread calls `Scheduler.fire_due` about once a
second; when a worker starts, `sync_declared` stores the schedules declared in its code.

Each slot fires once however many workers run: `storage.fire_schedule` moves the schedule's
next_run_at from the slot the firer read to the next one, conditionally, in the transaction that
stores the run; a firer that lost the race changes nothing.

Slots missed while no worker ran fire once, late, with the latest missed slot's timestamp (the
earlier ones do not fire); with `missed="skip"`, a slot more than MISSED_GRACE late is skipped and
the schedule waits for its next slot.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tether.cron import MISSED_GRACE, iso, latest_slot, next_slot
from tether.engine.triggering import build_runs
from tether.errors import TetherError
from tether.observe.metrics import active as active_metrics
from tether.schedules import declared_key, new_record
from tether.storage.records import NewRun
from tether.storage.schedules import ScheduleRecord, SlotClaim

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.scheduler")

BATCH = 100  # due schedules handled per call


def schedule_tag(schedule_id: str) -> str:
    """The tag of the runs a schedule creates: `tether runs list --tag schedule:ID`."""
    return f"schedule:{schedule_id}"


def slot_payload(record: ScheduleRecord, slot: float) -> dict[str, Any]:
    return {"timestamp": iso(slot), "last_timestamp": iso(record.last_run_at),
            "timezone": record.timezone, "schedule_id": record.id,
            "external_id": record.external_id}


class Scheduler:
    def __init__(self, app: Tether) -> None:
        self.app = app

    def sync_declared(self, now: float) -> None:
        """Store the schedules declared with `@app.task(cron=...)` and deactivate declared
        schedules that the code no longer declares (one app's code is the truth for its
        database)."""
        storage = self.app.storage
        keys = []
        for task in self.app.tasks.values():
            if task.schedule is not None:
                keys.append(declared_key(task.id))
                storage.save_schedule(new_record(task.id, task.schedule, now, declared=True,
                                                 deduplication_key=keys[-1]))
        for schedule_id in storage.retire_declared(keys, now):
            log.info("schedule %s is no longer declared in the code; deactivated", schedule_id)

    def fire_due(self, now: float | None = None) -> int:
        """Fire every due slot; returns how many runs this call created."""
        now = self.app.clock.now() if now is None else now
        fired = 0
        for record in self.app.storage.due_schedules(now, BATCH):
            try:
                fired += self.fire(record, now)
            except TetherError as exc:
                log.error("schedule %s of task %s: %s", record.id, record.task_id, exc)
        return fired

    def fire(self, record: ScheduleRecord, now: float) -> bool:
        """Fire the latest due slot of `record` (or skip it); False if another worker did."""
        due = record.next_run_at
        assert due is not None
        slot = max(latest_slot(record.cron, record.timezone, now) or due, due)
        skip = record.missed == "skip" and now - slot > MISSED_GRACE
        run = None if skip else self._run(record, slot, now)
        claim = SlotClaim(record.id, due, slot, next_slot(record.cron, record.timezone, now), run,
                          now)
        won = self.app.storage.fire_schedule(claim)
        if won and run is not None:
            metrics = active_metrics()
            if metrics is not None:
                metrics.triggered(run.task_id)
            log.info("schedule %s fired slot %s: run %s", record.id, iso(slot), run.id)
        elif won and skip:
            log.info("schedule %s skipped missed slots up to %s", record.id, iso(slot))
        return won and run is not None

    def _run(self, record: ScheduleRecord, slot: float, now: float) -> NewRun | None:
        """The run of one slot, built like any trigger; None (the slot is skipped) if the task is
        unknown or rejects the payload."""
        try:
            spec, validate = self.app.spec_for(record.task_id)
            options = {"tags": [schedule_tag(record.id)]}
            [run] = build_runs(spec, validate, [(slot_payload(record, slot), options)], now)
            self.app._ensure_queue(spec.queue, now)
        except TetherError as exc:
            log.error("schedule %s: slot %s skipped: %s", record.id, iso(slot), exc)
            return None
        return run
