"""Cron schedules over HTTP (Trigger.dev's `schedules.*`), on `app.schedules`.

A schedule declared in code (`@app.task(cron=...)`, type DECLARATIVE) can be read, activated and
deactivated here but not updated or deleted: the code owns it and workers restore it at start.
The timezone list needs no API key: the SDK's `schedules.timezones()` sends none.
This module also holds the pieces the queue and token routes share: ISO dates, offset pages,
the error body and the text type that keeps NUL characters out of storage."""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal, TypeVar
from zoneinfo import available_timezones

from cronsim import CronSim, CronSimError
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field, StringConstraints

from tether.app import Tether
from tether.schedules import Schedule
from tether.server.api.replies import ReplyDep
from tether.server.deps import TetherDep, api_key
from tether.server.errors import ApiError

T = TypeVar("T")

# Text that storage accepts on both backends (PostgreSQL rejects NUL characters).
Text = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]


class ErrorBody(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "Conflicts with the current state"},
    422: {"model": ErrorBody, "description": "Invalid request"},
}


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, as JavaScript's `Date.toISOString()` writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def optional_iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


class OffsetPagination(BaseModel):
    currentPage: int
    totalPages: int
    count: int


def offset_page(items: list[T], page: int, per_page: int) -> tuple[list[T], OffsetPagination]:
    """One page of `items` (pages count from 1) and its pagination block."""
    start = (page - 1) * per_page
    pagination = OffsetPagination(currentPage=page, totalPages=math.ceil(len(items) / per_page),
                                  count=len(items))
    return items[start:start + per_page], pagination


# An id or name in a path: NUL characters never name anything stored.
IdPath = Annotated[str, Path(max_length=256, pattern=r"^[^\x00]*$")]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]
PerPageQuery = Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100)")]


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
        raise ApiError(409, f"schedule {schedule.id} is declared in code (@app.task(cron=...) on "
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
        raise ApiError(409, f"schedule {schedule_id} has no deduplication key, so it cannot be "
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
    # "localtime" is this machine's zone file, not an IANA name
    return tuple(sorted((available_timezones() | {"UTC"}) - {"localtime", "posixrules"}))


# The SDK's `schedules.timezones()` sends no API key (Trigger.dev serves the list publicly), and
# the list holds nothing private.
public_router = APIRouter(prefix="/api/v1", tags=["schedules"])


@public_router.get("/timezones", summary="The IANA timezones a schedule can use (no API key)",
                   openapi_extra={"security": []})
def list_timezones(excludeUtc: bool = False) -> Timezones:
    names = _all_timezones()
    return Timezones(timezones=[n for n in names if not (excludeUtc and n == "UTC")])
