"""Queues over HTTP (Trigger.dev's `queues.*`): depth, running count and limit; pause and resume.

A paused queue keeps its runs QUEUED: workers claim none of them until it is resumed. A task's
default queue is named after the task (type "task"); queues named in code are "custom". A queue
is addressed by its id (`queue_<name>`) or, with `?type=task|custom`, by its name."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tether.app import Tether
from tether.server.api.common import (
    ERRORS,
    IdPath,
    OffsetPagination,
    PageQuery,
    PerPageQuery,
    offset_page,
)
from tether.server.deps import TetherDep, api_key
from tether.server.errors import ApiError
from tether.storage.queue_records import QueueRecord

ID_PREFIX = "queue_"

QueueType = Literal["task", "custom"]
TypeQuery = Annotated[Literal["id", "task", "custom"] | None, Query(
    alias="type", description="How the path names the queue: its id (the default) or a task/custom name")]


class QueueItem(BaseModel):
    id: str = Field(description="queue_<name>")
    name: str
    type: QueueType = Field(description="task: a task's default queue, named after it; custom: "
                                        "a queue named in code")
    running: int = Field(description="Runs executing now")
    queued: int = Field(description="Runs waiting for a slot (QUEUED or DELAYED)")
    concurrencyLimit: int | None = Field(description="null when unlimited")
    paused: bool
    releaseConcurrencyOnWaitpoint: bool = Field(
        default=True, description="Always true: a WAITING run holds no slot")


class QueueList(BaseModel):
    data: list[QueueItem]
    pagination: OffsetPagination


class PauseBody(BaseModel):
    action: Literal["pause", "resume"]
    type: Literal["id", "task", "custom"] | None = None


def _items(tether: Tether) -> list[QueueItem]:
    storage = tether.storage
    stats = storage.queue_stats()
    task_ids = {t.id for t in storage.list_tasks()} | set(tether.tasks)
    return [_item(q, stats.get(q.name, (0, 0)), q.name in task_ids)
            for q in sorted(storage.list_queues(), key=lambda q: q.name)]


def _item(queue: QueueRecord, counts: tuple[int, int], is_task: bool) -> QueueItem:
    queued, running = counts
    return QueueItem(id=ID_PREFIX + queue.name, name=queue.name,
                     type="task" if is_task else "custom", running=running, queued=queued,
                     concurrencyLimit=queue.concurrency, paused=bool(queue.paused))


def queue_name(value: str, kind: str | None) -> str:
    """The queue's name from the path. The SDK encodes a name twice (so that "/" survives)."""
    name = unquote(value)
    if kind in (None, "id") and name.startswith(ID_PREFIX):
        name = name[len(ID_PREFIX):]
    return name


def _find(tether: Tether, name: str) -> QueueItem:
    for item in _items(tether):
        if item.name == name:
            return item
    raise ApiError(404, f"no queue named {name!r} (queues appear when a worker starts or a task "
                        "is triggered)")


router = APIRouter(prefix="/api/v1", tags=["queues"], dependencies=[Depends(api_key)],
                   responses=ERRORS)


@router.get("/queues", summary="List queues by name")
def list_queues(tether: TetherDep, page: PageQuery = 1, perPage: PerPageQuery = 10) -> QueueList:
    items, pagination = offset_page(_items(tether), page, perPage)
    return QueueList(data=items, pagination=pagination)


@router.get("/queues/{queue}", summary="Retrieve a queue by id or name")
def retrieve_queue(queue: IdPath, tether: TetherDep, kind: TypeQuery = None) -> QueueItem:
    return _find(tether, queue_name(queue, kind))


@router.post("/queues/{queue}/pause", summary="Pause or resume a queue")
def pause_queue(queue: IdPath, body: PauseBody, tether: TetherDep) -> QueueItem:
    name = queue_name(queue, body.type)
    _find(tether, name)  # 404 for an unknown name before storage sees it
    if not tether.storage.set_queue_paused(name, body.action == "pause", tether.clock.now()):
        raise ApiError(404, f"no queue named {name!r}")
    return _find(tether, name)
