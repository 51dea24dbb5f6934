"""`app.schedules`: cron schedules that create runs. The CLI calls these same methods.

A schedule is declared next to its task (`@app.task(cron="0 * * * *")`, stored when a worker
starts) or created at run time (`app.schedules.create(task=..., cron=...)`). Workers fire due
slots (worker/scheduler.py); each slot fires once however many workers run.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tether.clock import new_id
from tether.cron import CronSpec, cron_spec, next_slot, upcoming
from tether.errors import ConfigurationError, ScheduleNotFound
from tether.models import to_datetime
from tether.storage.schedules import ScheduleRecord

if TYPE_CHECKING:
    from tether.app import Tether


@dataclass(frozen=True)
class Schedule:
    """A stored schedule. Times are timezone-aware UTC; `next_run_at` is None while inactive.
    `declared`: from `@app.task(cron=...)` (workers keep it in line with the code)."""

    id: str
    task_id: str
    cron: str
    timezone: str
    external_id: str | None
    deduplication_key: str | None
    active: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    declared: bool
    missed: str = "once"

    def upcoming(self, count: int = 3, after: datetime | None = None) -> list[datetime]:
        """The next `count` slots after `after` (default: now), in the schedule's timezone."""
        start = (after or datetime.now().astimezone()).timestamp()
        return upcoming(self.cron, self.timezone, start, count)


def to_schedule(record: ScheduleRecord) -> Schedule:
    return Schedule(
        id=record.id, task_id=record.task_id, cron=record.cron, timezone=record.timezone,
        external_id=record.external_id, deduplication_key=record.deduplication_key,
        active=bool(record.active), next_run_at=to_datetime(record.next_run_at),
        last_run_at=to_datetime(record.last_run_at),
        created_at=to_datetime(record.created_at),  # type: ignore[arg-type]
        declared=bool(record.declared), missed=record.missed)


def new_record(task_id: str, spec: CronSpec, now: float, *, external_id: str | None = None,
               deduplication_key: str | None = None, declared: bool = False) -> ScheduleRecord:
    """A schedule row to store; its first slot is the next one after `now`."""
    return ScheduleRecord(
        id=new_id("sched"), task_id=task_id, cron=spec.cron, timezone=spec.timezone,
        missed=spec.missed, external_id=external_id, deduplication_key=deduplication_key,
        active=1, declared=int(declared), next_run_at=next_slot(spec.cron, spec.timezone, now),
        last_run_at=None, created_at=now, updated_at=now)


def declared_key(task_id: str) -> str:
    """The deduplication key of the schedule declared with `@app.task(cron=...)`."""
    return f"task:{task_id}"


def _optional_text(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
        raise ConfigurationError(f"{name} must be a string of 1 to 256 characters, got {value!r}")
    return value


class Schedules:
    """`app.schedules`: the cron schedules stored in the app's database."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def create(self, *, task: Any, cron: str, timezone: str = "UTC",
               external_id: str | None = None, deduplication_key: str | None = None,
               missed: str = "once") -> Schedule:
        """Store a schedule of `task` (a task or its id). With a `deduplication_key` that an
        existing schedule has, update that one instead (its next slot stays unless the cron or
        timezone changed) and return it. `missed="skip"` skips slots missed while no worker ran
        instead of firing the latest of them once, late."""
        task_id = task if isinstance(task, str) else getattr(task, "id", None)
        if not isinstance(task_id, str):
            raise ConfigurationError(f"task must be a task or a task id, got {task!r}")
        spec = cron_spec(cron, timezone, missed, where=f"schedule of task {task_id!r}")
        self._app.spec_for(task_id)  # raises UnknownTask
        record = new_record(task_id, spec, self._app.clock.now(),
                            external_id=_optional_text("external_id", external_id),
                            deduplication_key=_optional_text("deduplication_key", deduplication_key))
        stored, _ = self._app.storage.save_schedule(record)
        return to_schedule(stored)

    def list(self, *, task: str | None = None) -> builtins.list[Schedule]:
        """Every schedule, or those of one task (by id)."""
        found = [to_schedule(r) for r in self._app.storage.list_schedules()]
        return [s for s in found if task is None or s.task_id == task]

    def retrieve(self, schedule_id: str) -> Schedule:
        """The schedule with this id; ScheduleNotFound if there is none."""
        return to_schedule(self._get(schedule_id))

    def delete(self, schedule_id: str) -> None:
        """Delete a schedule. A declared one comes back when a worker starts with it in the
        code: remove `cron=` from the task instead, or deactivate it."""
        if not self._app.storage.delete_schedule(schedule_id):
            raise ScheduleNotFound(schedule_id)

    def activate(self, schedule_id: str) -> Schedule:
        """Fire again, from the next slot on (slots passed while inactive are not fired)."""
        record = self._get(schedule_id)
        now = self._app.clock.now()
        return self._set(schedule_id, True, next_slot(record.cron, record.timezone, now), now)

    def deactivate(self, schedule_id: str) -> Schedule:
        """Stop firing until activated. Workers leave a deactivated declared schedule inactive."""
        return self._set(schedule_id, False, None, self._app.clock.now())

    def _get(self, schedule_id: str) -> ScheduleRecord:
        record = self._app.storage.get_schedule(schedule_id)
        if record is None:
            raise ScheduleNotFound(schedule_id)
        return record

    def _set(self, schedule_id: str, active: bool, next_run_at: float | None,
             now: float) -> Schedule:
        record = self._app.storage.set_schedule_active(schedule_id, active, next_run_at, now)
        if record is None:
            raise ScheduleNotFound(schedule_id)
        return to_schedule(record)
