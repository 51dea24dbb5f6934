"""Cron schedules over HTTP (Trigger.dev's `schedules.*`), on `app.schedules`.

A schedule declared in code (`@app.task(cron=...)`, type DECLARATIVE) can be read, activated and
deactivated here but not updated or deleted: the code owns it and workers restore it at start.
Such a refusal is a 400 with the reason, not a 409, which the SDK retries for seconds before it
fails the same way. The timezone list needs no API key: the SDK's `schedules.timezones()` sends
none; it lists UTC first, as the SDK documents.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import available_timezones

from cronsim import CronSim, CronSimError
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from tether.app import Tether
from tether.schedules import Schedule
from tether.server.api.common import (
    ERRORS,
    IdPath,
    OffsetPagination,
    PageQuery,
    PerPageQuery,
    Text,
    offset_page,
    optional_iso,
)
from tether.server.api.replies import ReplyDep
from tether.server.deps import TetherDep, api_key
from tether.server.errors import ApiError


# -- shapes ---------------------------------------------------------------------------------------
class Generator(BaseModel):
    type: Literal["CRON"] = "CRON"
    expression: str
    description: str


class Environment(BaseModel):
    id: str
    type: str


class ScheduleObject(BaseModel):
    id: str
    type: Literal["DECLARATIVE", "IMPERATIVE"]
    task: str
    active: bool
    deduplicationKey: str | None = None
    externalId: str | None = None
    generator: Generator
    timezone: str
    nextRun: str | None = None
    environments: list[Environment] = Field(default_factory=list)


class ScheduleList(BaseModel):
    data: list[ScheduleObject]
    pagination: OffsetPagination


class UpdateScheduleBody(BaseModel):
    task: Text
    cron: Text = Field(description="Five fields: minute hour day-of-month month day-of-week")
    externalId: Text | None = None
    timezone: Text | None = Field(default=None, description="An IANA name; default UTC")


class CreateScheduleBody(UpdateScheduleBody):
    deduplicationKey: Text = Field(
        description="Creating again with the same key updates that schedule instead")


class DeletedSchedule(BaseModel):
    id: str


class Timezones(BaseModel):
    timezones: list[str]


@lru_cache(maxsize=512)
def describe(cron: str) -> str:
    """A short English description of a cron expression ("At 09:00 on Monday through Friday")."""
    try:
        return str(CronSim(cron, datetime(2000, 1, 1)).explain())
    except (CronSimError, ValueError, AttributeError):
        return cron


def to_object(schedule: Schedule) -> ScheduleObject:
    return ScheduleObject(
        id=schedule.id, type="DECLARATIVE" if schedule.declared else "IMPERATIVE",
        task=schedule.task_id, active=schedule.active,
        deduplicationKey=schedule.deduplication_key, externalId=schedule.external_id,
        generator=Generator(expression=schedule.cron, description=describe(schedule.cron)),
        timezone=schedule.timezone, nextRun=optional_iso(schedule.next_run_at))


# -- routes ---------------------------------------------------------------------------------------
router = APIRouter(prefix="/api/v1", tags=["schedules"], dependencies=[Depends(api_key)],
                   responses=ERRORS)


def _refuse_declared(schedule: Schedule, change: str) -> None:
    if schedule.declared:
        raise ApiError(400, f"schedule {schedule.id} is declared in code (@app.task(cron=...) on "
                            f"task {schedule.task_id!r}) and cannot be {change} over the API; "
                            "change the task's cron= instead, or deactivate the schedule")


def _refuse_declared_key(tether: Tether, key: str) -> None:
    for schedule in tether.schedules.list():
        if schedule.deduplication_key == key:
            _refuse_declared(schedule, "updated")


@router.post("/schedules", summary="Create a schedule (or update the one with this key)",
             response_model_exclude_none=True)
def create_schedule(body: CreateScheduleBody, tether: TetherDep) -> ScheduleObject:
    _refuse_declared_key(tether, body.deduplicationKey)
    schedule = tether.schedules.create(
        task=body.task, cron=body.cron, timezone=body.timezone or "UTC",
        external_id=body.externalId, deduplication_key=body.deduplicationKey)
    return to_object(schedule)


@router.get("/schedules", summary="List schedules, newest first",
             response_model_exclude_none=True)
def list_schedules(tether: TetherDep, page: PageQuery = 1,
                   perPage: PerPageQuery = 10) -> ScheduleList:
    found = sorted(tether.schedules.list(), key=lambda s: (s.created_at, s.id), reverse=True)
    items, pagination = offset_page(found, page, perPage)
    return ScheduleList(data=[to_object(s) for s in items], pagination=pagination)


@router.get("/schedules/{schedule_id}", summary="Retrieve a schedule",
             response_model_exclude_none=True)
def retrieve_schedule(schedule_id: IdPath, tether: TetherDep) -> ScheduleObject:
    return to_object(tether.schedules.retrieve(schedule_id))


@router.put("/schedules/{schedule_id}", summary="Update an imperative schedule",
             response_model_exclude_none=True)
def update_schedule(schedule_id: IdPath, body: UpdateScheduleBody,
                    tether: TetherDep) -> ScheduleObject:
    """Replaces the task, cron, timezone (default UTC) and external id. The next slot stays
    unless the cron or timezone changed."""
    current = tether.schedules.retrieve(schedule_id)
    _refuse_declared(current, "updated")
    if current.deduplication_key is None:
        raise ApiError(400, f"schedule {schedule_id} has no deduplication key, so it cannot be "
                            "updated in place; delete it and create a new one")
    schedule = tether.schedules.create(
        task=body.task, cron=body.cron, timezone=body.timezone or "UTC",
        external_id=body.externalId, deduplication_key=current.deduplication_key,
        missed=current.missed)
    return to_object(schedule)


def _delete(tether: Tether, schedule_id: str) -> DeletedSchedule:
    _refuse_declared(tether.schedules.retrieve(schedule_id), "deleted")
    tether.schedules.delete(schedule_id)
    return DeletedSchedule(id=schedule_id)


@router.delete("/schedules/{schedule_id}", summary="Delete an imperative schedule",
               response_model=DeletedSchedule)
def delete_schedule(schedule_id: IdPath, tether: TetherDep, reply: ReplyDep) -> Response:
    """The SDK's retry of a delete that succeeded (same request idempotency key) gets the first
    answer, not a 404."""
    return reply.answer(lambda: _delete(tether, schedule_id))


@router.post("/schedules/{schedule_id}/activate", summary="Fire again, from the next slot on",
             response_model_exclude_none=True)
def activate_schedule(schedule_id: IdPath, tether: TetherDep) -> ScheduleObject:
    return to_object(tether.schedules.activate(schedule_id))


@router.post("/schedules/{schedule_id}/deactivate", summary="Stop firing until activated",
             response_model_exclude_none=True)
def deactivate_schedule(schedule_id: IdPath, tether: TetherDep) -> ScheduleObject:
    return to_object(tether.schedules.deactivate(schedule_id))


@lru_cache(maxsize=1)
def _all_timezones() -> tuple[str, ...]:
    """UTC first (as Trigger.dev lists them), then the IANA names in order. "localtime" is this
    machine's zone file, not an IANA name."""
    names = available_timezones() - {"UTC", "localtime", "posixrules"}
    return ("UTC", *sorted(names))


# The SDK's `schedules.timezones()` sends no API key (Trigger.dev serves the list publicly), and
# the list holds nothing private.
public_router = APIRouter(prefix="/api/v1", tags=["schedules"])


@public_router.get("/timezones", summary="The IANA timezones a schedule can use (no API key)",
                   openapi_extra={"security": []})
def list_timezones(excludeUtc: bool = False) -> Timezones:
    names = _all_timezones()
    return Timezones(timezones=[n for n in names if not (excludeUtc and n == "UTC")])
