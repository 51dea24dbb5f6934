"""A queue's keys over HTTP (Tether's own routes, app.queues): the keys paused by back-pressure
or by hand, pausing and resuming one, and the runs ready per key.

    GET  /api/v1/paused-keys[?queue=Q]           every paused key (of one queue)
    GET  /api/v1/queues/{queue}/paused-keys      the queue's paused keys
    POST /api/v1/queues/{queue}/paused-keys      pause a key: {"key", "until" | "seconds", "reason"}
    POST /api/v1/queues/{queue}/resume-key       resume a key: {"key"}
    GET  /api/v1/queues/{queue}/keys[?limit=N]   the keys with the most runs ready

A key is a run's concurrency key; "" names the runs without one (so a key travels in the body,
never in the path). The queue is named as in the queues routes: `queue_<name>` or its name."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from tether.queues import PausedKey
from tether.server.api.common import ERRORS, IdPath, iso
from tether.server.api.queues import queue_name
from tether.server.deps import TetherDep, api_key
from tether.server.errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["queues"], dependencies=[Depends(api_key)],
                   responses=ERRORS)

Key = Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00]*$")]


class PausedKeyItem(BaseModel):
    queue: str
    key: str = Field(description='The concurrency key; "" for the runs without one')
    until: str = Field(description="No run of the key is claimed before this time")
    reason: str | None
    pausedAt: str


class PausedKeyList(BaseModel):
    data: list[PausedKeyItem]


class PauseKeyBody(BaseModel):
    key: Key
    until: datetime | None = Field(None, description="ISO-8601 time with a timezone")
    seconds: float | None = Field(None, gt=0, le=366 * 86400, description="Or: for this long")
    reason: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] = \
        "paused by hand"


class ResumeKeyBody(BaseModel):
    key: Key


class Resumed(BaseModel):
    resumed: bool = Field(description="false when the key was not paused")


class KeyDepthItem(BaseModel):
    key: str
    queued: int = Field(description="Runs ready to start (QUEUED)")
    executing: int


class KeyDepthList(BaseModel):
    data: list[KeyDepthItem]


def _item(p: PausedKey) -> PausedKeyItem:
    return PausedKeyItem(queue=p.queue, key=p.key, until=iso(p.until), reason=p.reason,
                         pausedAt=iso(p.paused_at))


@router.get("/paused-keys", summary="List paused keys")
def list_paused_keys(tether: TetherDep, queue: Annotated[str | None, Query(
        max_length=256, pattern=r"^[^\x00]*$", description="Only this queue's")] = None
                     ) -> PausedKeyList:
    name = None if queue is None else queue_name(queue, None)
    return PausedKeyList(data=[_item(p) for p in tether.queues.paused_keys(name)])


@router.get("/queues/{queue}/paused-keys", summary="List a queue's paused keys")
def queue_paused_keys(queue: IdPath, tether: TetherDep) -> PausedKeyList:
    return PausedKeyList(data=[_item(p) for p in tether.queues.paused_keys(queue_name(queue, None))])


@router.post("/queues/{queue}/paused-keys", summary="Pause a queue's key until a time")
def pause_key(queue: IdPath, body: PauseKeyBody, tether: TetherDep) -> PausedKeyItem:
    if (body.until is None) == (body.seconds is None):
        raise ApiError(422, "give either until (an ISO-8601 time) or seconds")
    until = body.until if body.until is not None else body.seconds
    assert until is not None
    return _item(tether.queues.pause_key(queue_name(queue, None), body.key, until, body.reason))


@router.post("/queues/{queue}/resume-key", summary="Resume a queue's paused key now")
def resume_key(queue: IdPath, body: ResumeKeyBody, tether: TetherDep) -> Resumed:
    return Resumed(resumed=tether.queues.resume_key(queue_name(queue, None), body.key))


@router.get("/queues/{queue}/keys", summary="A queue's keys with the most runs ready")
def queue_keys(queue: IdPath, tether: TetherDep, limit: Annotated[int, Query(
        ge=1, le=1000, description="How many keys")] = 20) -> KeyDepthList:
    depths = tether.queues.key_depths(queue_name(queue, None), limit)
    return KeyDepthList(data=[KeyDepthItem(key=d.key, queued=d.queued, executing=d.executing)
                              for d in depths])
