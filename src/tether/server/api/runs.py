"""Reading and managing runs over HTTP: Trigger.dev's run routes (retrieve, list, cancel, replay,
reschedule, tags, metadata) and Tether's own retry. Handlers call `app.runs` where it has the
operation and storage directly for the rest (tags, metadata).

A request that cannot apply to the run as it is (canceling a finished run, rescheduling one that
is not DELAYED, retrying one that did not fail) is a 400 with the reason, not a 409: Trigger.dev's
SDK retries 409 answers, and these would fail the same way every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from tether.app import Tether
from tether.durations import seconds
from tether.engine.triggering import tag_list
from tether.errors import InvalidTransition, RunNotFound
from tether.models import Run, RunStatus
from tether.serialization import dumps, dumps_input, loads
from tether.server.api.common import comma_list, named_values
from tether.server.api.replay_body import ReplayBody, replay_overrides
from tether.server.api.replies import ReplyDep
from tether.server.api.shapes import (
    Pagination,
    RunObject,
    RunPage,
    RunStatusName,
    list_item,
    queue_names,
    run_object,
)
from tether.server.api.trigger_body import Tags, plain_params, when
from tether.server.deps import ApiKeyDep, TetherDep
from tether.server.errors import ApiError
from tether.storage.records import RunFilter, RunRecord

T = TypeVar("T")
MAX_PAGE = 100


class RunId(BaseModel):
    id: str


class RescheduleBody(BaseModel):
    delay: str = Field(description='a duration from now ("1h", "30m") or an ISO-8601 date')


class TagsBody(BaseModel):
    tags: Tags


class Message(BaseModel):
    message: str


class MetadataOperation(BaseModel):
    type: str = Field(description="set, delete, append, remove, increment or update")
    key: str | None = None
    value: Any = None


class MetadataBody(BaseModel):
    metadata: dict[str, Any] | None = None
    operations: list[MetadataOperation] | None = None


class MetadataObject(BaseModel):
    metadata: dict[str, Any]


# -- helpers ----------------------------------------------------------------------------------
def _record(tether: Tether, run_id: str) -> RunRecord:
    record = tether.storage.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return record


def _object(tether: Tether, run_id: str) -> RunObject:
    return run_object(tether.storage, _record(tether, run_id), tether.clock.now())


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _changed(tether: Tether, run: Run) -> RunObject:
    """The run object as the change left it: a worker may claim (and even finish) a retried
    run before it is read back, so the fields a transition sets come from `run`."""
    record = _record(tether, run.id)
    record = dataclasses.replace(
        record, status=run.status.value, attempts=run.attempts,
        started_at=_epoch(run.started_at), finished_at=_epoch(run.finished_at),
        available_at=_epoch(run.available_at) or record.available_at,
        updated_at=_epoch(run.updated_at) or record.updated_at,
        output=None if run.output is None else dumps(run.output),
        error=None if run.error is None else dumps(run.error))
    return run_object(tether.storage, record, tether.clock.now())


def _or_400(apply: Callable[[], T]) -> T:
    """`apply()`, with a transition that does not apply answered 400 (see the module doc)."""
    try:
        return apply()
    except InvalidTransition as exc:
        raise ApiError(400, str(exc)) from None


def _statuses(value: str | None) -> list[str] | None:
    """Tether statuses for `filter[status]`; [] when none of them can occur in Tether."""
    names = named_values(value, (s.value for s in RunStatusName), "filter[status]")
    if names is None:
        return None
    tether_statuses = {s.value for s in RunStatus}
    return [n for n in names if n in tether_statuses]


def _created_after(start_ms: int | None, period: str | None, now: float) -> float | None:
    bounds = []
    if start_ms is not None:
        bounds.append(start_ms / 1000)
    if period is not None:
        bounds.append(now - seconds(period, "filter[createdAt][period]"))
    return max(bounds) if bounds else None


# -- the list ---------------------------------------------------------------------------------
def run_filter(
        tether: TetherDep,
        status: Annotated[str | None, Query(alias="filter[status]")] = None,
        task: Annotated[str | None, Query(alias="filter[taskIdentifier]")] = None,
        tag: Annotated[str | None, Query(alias="filter[tag]")] = None,
        queue: Annotated[str | None, Query(alias="filter[queue]")] = None,
        batch: Annotated[str | None, Query(alias="filter[batch]")] = None,
        version: Annotated[str | None, Query(alias="filter[version]")] = None,
        is_test: Annotated[bool | None, Query(alias="filter[isTest]")] = None,
        created_from: Annotated[int | None, Query(alias="filter[createdAt][from]")] = None,
        created_to: Annotated[int | None, Query(alias="filter[createdAt][to]")] = None,
        period: Annotated[str | None, Query(alias="filter[createdAt][period]")] = None,
) -> RunFilter | None:
    """The list's filters (comma lists; dates in epoch milliseconds). None when nothing can
    match: only statuses Tether never has, a `filter[version]` (Tether runs have no version),
    or `filter[isTest]=true` (nor test runs)."""
    statuses = _statuses(status)
    if statuses == [] or version is not None or is_test:
        return None
    return RunFilter(
        status=statuses, task_id=comma_list(task), tag=comma_list(tag), queue=queue_names(comma_list(queue)),
        batch_id=batch, created_after=_created_after(created_from, period, tether.clock.now()),
        created_before=None if created_to is None else (created_to + 1) / 1000)


RunFilterDep = Annotated[RunFilter | None, Depends(run_filter)]


def _exists(tether: Tether, flt: RunFilter, older_than: str | None = None,
            newer_than: str | None = None) -> bool:
    """Whether a run matching `flt` is older than, or newer than, the given run id."""
    probe = dataclasses.replace(flt, limit=1, before_id=older_than, newer_than_id=newer_than)
    return bool(tether.storage.list_runs(probe))


def _window(tether: Tether, flt: RunFilter, size: int, after: str | None,
            before: str | None) -> tuple[list[RunRecord], bool, bool]:
    """A page of runs, newest first, and whether older and newer runs exist beyond it."""
    storage = tether.storage
    if before is not None:
        rows = storage.list_runs(dataclasses.replace(flt, newer_than_id=before, limit=size + 1))
        data = rows[1:] if len(rows) > size else rows
        older = bool(data) and _exists(tether, flt, older_than=data[-1].id)
        return data, older, len(rows) > size
    rows = storage.list_runs(dataclasses.replace(flt, before_id=after, limit=size + 1))
    data = rows[:size]
    newer = after is not None and bool(data) and _exists(tether, flt, newer_than=data[0].id)
    return data, len(rows) > size, newer


def run_page(tether: Tether, flt: RunFilter | None, size: int, after: str | None,
             before: str | None) -> RunPage:
    """With both cursors, `before` wins, as in Trigger.dev: the SDK's `getPreviousPage()` on a
    page reached by `getNextPage()` sends the `page[after]` it came with too."""
    if before is not None:
        after = None
    if flt is None:
        return RunPage(data=[], pagination=Pagination())
    data, older, newer = _window(tether, flt, size, after, before)
    now = tether.clock.now()
    return RunPage(data=[list_item(r, now) for r in data], pagination=Pagination(
        next=data[-1].id if data and older else None,
        previous=data[0].id if data and newer else None))


# -- metadata ---------------------------------------------------------------------------------
def _number(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


# operation type -> the new value of `key` from its current value and the operation's value
_OPERATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "set": lambda current, value: value,
    "append": lambda current, value: [*_listed(current), value],
    "remove": lambda current, value: [item for item in _listed(current) if item != value],
    "increment": lambda current, value: _number(current) + _number(value),
}


def _apply_operation(metadata: dict[str, Any], op: MetadataOperation) -> None:
    if op.type == "update" and isinstance(op.value, dict):
        metadata.update(op.value)
    elif op.type not in _OPERATIONS and op.type != "delete":
        raise ApiError(422, f"unknown metadata operation {op.type!r}: use set, delete, append, "
                            "remove, increment (with a key) or update (with an object value)")
    elif op.key is None:
        raise ApiError(422, f"metadata operation {op.type!r} needs a key")
    elif op.type == "delete":
        metadata.pop(op.key, None)
    else:
        metadata[op.key] = _OPERATIONS[op.type](metadata.get(op.key), op.value)


def update_metadata(tether: Tether, run_id: str, body: MetadataBody) -> MetadataObject:
    record = _record(tether, run_id)
    metadata = dict(body.metadata) if body.metadata is not None else dict(loads(record.metadata) or {})
    for op in body.operations or []:
        _apply_operation(metadata, op)
    text = dumps_input(metadata, "metadata", tether.max_payload_size, tether.objects, run_id)
    updated = tether.storage.set_metadata(run_id, text, tether.clock.now())
    if updated is None:
        raise RunNotFound(run_id)
    return MetadataObject(metadata=loads(updated.metadata) or {})


def add_tags(tether: Tether, run_id: str, body: TagsBody) -> Message:
    tags = tag_list(body.tags)
    before = set(loads(_record(tether, run_id).tags) or [])
    if tether.storage.add_tags(run_id, tags, tether.clock.now()) is None:
        raise RunNotFound(run_id)
    added = len(set(tags) - before)
    return Message(message=f"Successfully set {added} new tag{'' if added == 1 else 's'}.")


# -- routes -----------------------------------------------------------------------------------
router = APIRouter(tags=["runs"], dependencies=[Depends(plain_params)])


@router.get("/api/v3/runs/{run_id}", response_model=RunObject, response_model_exclude_none=True)
def retrieve_run(run_id: str, tether: TetherDep, key: ApiKeyDep) -> RunObject:
    """A run with its payload, output (COMPLETED runs), error and related runs."""
    return _object(tether, run_id)


@router.get("/api/v1/runs", response_model=RunPage, response_model_exclude_none=True)
def list_runs(tether: TetherDep, key: ApiKeyDep, flt: RunFilterDep,
              size: Annotated[int, Query(alias="page[size]", ge=1, le=MAX_PAGE)] = 25,
              after: Annotated[str | None, Query(alias="page[after]")] = None,
              before: Annotated[str | None, Query(alias="page[before]")] = None) -> RunPage:
    """Runs, newest first, a page at a time: `pagination.next` goes to older runs
    (`page[after]`), `pagination.previous` to newer ones (`page[before]`, which wins when both
    are sent). `filter[queue]` takes `task/NAME` and `custom/NAME` as the SDK sends them."""
    return run_page(tether, flt, size, after, before)


@router.post("/api/v2/runs/{run_id}/cancel", response_model=RunId)
def cancel_run(run_id: str, tether: TetherDep, key: ApiKeyDep, reply: ReplyDep) -> Response:
    """Cancel a run that has not finished, and its unfinished child runs."""
    def cancel() -> RunId:
        _or_400(lambda: tether.runs.cancel(run_id, reason="canceled over the API"))
        return RunId(id=run_id)

    return reply.answer(cancel)


@router.post("/api/v1/runs/{run_id}/replay", response_model=RunId)
def replay_run(run_id: str, tether: TetherDep, key: ApiKeyDep, reply: ReplyDep,
               body: ReplayBody | None = None) -> Response:
    """A new run of the same task with the same payload, tags, metadata and options; fields of
    the optional body (payload, tags, metadata, queue, delay, ttl, ...) replace the original's."""
    def replay() -> RunId:
        if body is None:
            return RunId(id=tether.runs.replay(run_id).id)
        payload, options = replay_overrides(tether, body)
        return RunId(id=tether.runs.replay(run_id, *payload, **options).id)

    return reply.answer(replay)


@router.post("/api/v1/runs/{run_id}/reschedule", response_model=RunObject)
def reschedule_run(run_id: str, body: RescheduleBody, tether: TetherDep, key: ApiKeyDep,
                   reply: ReplyDep) -> Response:
    """Move a DELAYED run's start to `delay` from now, or to a date."""
    def reschedule() -> RunObject:
        return _changed(tether, _or_400(lambda: tether.runs.reschedule(run_id, when(body.delay))))

    return reply.answer(reschedule)


@router.post("/api/v1/runs/{run_id}/retry", response_model=RunObject)
def retry_run(run_id: str, tether: TetherDep, key: ApiKeyDep, reply: ReplyDep) -> Response:
    """Tether's own: re-open a FAILED, TIMED_OUT or CANCELED run for one more attempt; steps
    that completed keep their results, so it continues where it failed."""
    def retry() -> RunObject:
        return _changed(tether, _or_400(lambda: tether.runs.retry(run_id)))

    return reply.answer(retry)


@router.post("/api/v1/runs/{run_id}/tags", response_model=Message)
def add_run_tags(run_id: str, body: TagsBody, tether: TetherDep, key: ApiKeyDep,
                 reply: ReplyDep) -> Response:
    """Add tags to a run (at most 10 in all, each 1 to 128 characters)."""
    return reply.answer(lambda: add_tags(tether, run_id, body))


@router.get("/api/v1/runs/{run_id}/metadata", response_model=MetadataObject)
def get_metadata(run_id: str, tether: TetherDep, key: ApiKeyDep) -> MetadataObject:
    return MetadataObject(metadata=loads(_record(tether, run_id).metadata) or {})


@router.put("/api/v1/runs/{run_id}/metadata", response_model=MetadataObject)
def put_metadata(run_id: str, body: MetadataBody, tether: TetherDep,
                 key: ApiKeyDep) -> MetadataObject:
    """Replace a run's metadata with `metadata`, then apply `operations` in order (`set`,
    `delete`, `append`, `remove`, `increment` by key; `update` merges an object). A running
    task that changes its own metadata afterwards writes its copy over this one."""
    return update_metadata(tether, run_id, body)
