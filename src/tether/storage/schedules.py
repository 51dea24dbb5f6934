"""Plain records of schedules, passed between the scheduler and a storage backend."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tether.storage.records import NewRun


@dataclass
class ScheduleRecord:
    """One row of the schedules table. `next_run_at` is the next slot to fire (None while
    inactive); `last_run_at` the slot that fired last."""

    id: str
    task_id: str
    cron: str
    timezone: str
    missed: str  # "once" or "skip"
    external_id: str | None
    deduplication_key: str | None
    active: int
    declared: int  # declared in code with @app.task(cron=...)
    next_run_at: float | None
    last_run_at: float | None
    created_at: float
    updated_at: float

    @classmethod
    def from_mapping(cls, row: Any) -> ScheduleRecord:
        return cls(**{name: row[name] for name in SCHEDULE_COLUMNS})


SCHEDULE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ScheduleRecord))


@dataclass
class SlotClaim:
    """Firing one due slot: applies only while the schedule's next_run_at still equals `due_at`
    (so one firer wins however many race), moving it to `next_run_at` and storing `run` in the
    same transaction. Without a run the slot is skipped."""

    schedule_id: str
    due_at: float
    slot: float  # the slot the run is for: the latest one due
    next_run_at: float | None
    run: NewRun | None
    now: float

    def params(self) -> dict[str, Any]:
        return {"id": self.schedule_id, "due_at": self.due_at, "slot": self.slot,
                "next_run_at": self.next_run_at, "fired": self.run is not None, "now": self.now}
