"""Workers over HTTP (Tether's own route): `GET /api/v1/workers`, what `app.workers.list()` and
`tether workers list` show, with the API's camelCase names and ISO times."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tether.server.api.common import ERRORS, iso, optional_iso
from tether.server.deps import TetherDep, api_key
from tether.workers import WorkerInfo, WorkerState

router = APIRouter(prefix="/api/v1", tags=["workers"], dependencies=[Depends(api_key)],
                   responses=ERRORS)


class WorkerItem(BaseModel):
    id: str
    hostname: str
    pid: int
    version: str | None = Field(description="The code version it runs")
    queues: list[str] = Field(description='The queues it serves; ["*"] for every queue')
    concurrency: int = Field(description="How many runs it executes at once")
    tasks: list[str] = Field(description="The task ids it serves")
    startedAt: str
    lastSeenAt: str = Field(description="Its last heartbeat")
    stoppedAt: str | None = Field(description="When it shut down cleanly")
    running: int = Field(description="Runs in hand at its last heartbeat")
    lastClaimAt: str | None = Field(description="When a claim last gave it a run")
    stalledSince: str | None = Field(
        description="Its event loop has not answered since then (an async task runs blocking "
                    "code); null when it answers")
    stalls: int = Field(description="How many times its event loop stalled")
    state: WorkerState = Field(
        description="live; stalled; idle-with-work (free places, no claim for 5 s while runs "
                    "of its tasks were ready); stopped (shut down cleanly); gone (no heartbeat, "
                    "or its process is gone)")


class WorkerList(BaseModel):
    data: list[WorkerItem]


def worker_item(w: WorkerInfo) -> WorkerItem:
    return WorkerItem(
        id=w.id, hostname=w.hostname, pid=w.pid, version=w.version, queues=w.queues,
        concurrency=w.concurrency, tasks=list(w.tasks), startedAt=iso(w.started_at),
        lastSeenAt=iso(w.last_seen_at), stoppedAt=optional_iso(w.stopped_at),
        running=w.running, lastClaimAt=optional_iso(w.last_claim_at),
        stalledSince=optional_iso(w.stalled_since), stalls=w.stalls, state=w.state)


AllQuery = Annotated[bool, Query(
    alias="all", description="Every worker ever recorded (default: those seen in the last 24 "
                             "hours); at most 1,000 either way, those seen last")]


@router.get("/workers", summary="List workers, the newest first")
def list_workers(tether: TetherDep, show_all: AllQuery = False) -> WorkerList:
    return WorkerList(data=[worker_item(w) for w in tether.workers.list(all=show_all)])
