"""Triggering over HTTP, as Trigger.dev's SDK does it: one run, a streamed batch (SDK >= 4.3.1:
`POST /api/v3/batches`, then the items as NDJSON), a one-request batch (older SDKs:
`POST /api/v2/tasks/batch`), and a batch's progress. `trigger_body.py` maps the options.

Idempotency keys follow Trigger.dev's rule, as on every channel (storage's `create_runs`): a key
whose run ended FAILED, TIMED_OUT or EXPIRED is free again and the trigger creates a new run, so a
caller can retry a failed job with the same key; batch items too, after the batch's own dedupe by
index (an index sent again gets its run, whatever became of it).

Every POST honours `x-trigger-request-idempotency-key` (`replies.py`): a request sent again with
the same key gets the first answer and creates nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ValidationError

from tether.app import Tether
from tether.clock import new_id
from tether.engine.triggering import build_runs
from tether.errors import ConfigurationError, TetherError, UnknownTask
from tether.models import RunStatus
from tether.observe.metrics import count_triggered
from tether.observe.tracing import incoming, start_trigger, stored
from tether.server.api.payloads import MAX_PACKET_BYTES, decode_payload, read_limited
from tether.server.api.replies import ReplyDep
from tether.server.api.shapes import IsoDate, iso
from tether.server.api.trigger_body import (
    BatchItemBody,
    BatchLine,
    BatchV2Body,
    CreateBatchBody,
    TriggerBody,
    TriggerOptionsBody,
    plain_params,
    trigger_options,
)
from tether.server.deps import ApiKeyDep, TetherDep
from tether.server.errors import ApiError, status_for
from tether.storage.records import NewRun, RunRecord
from tether.storage.server import BatchRecord

FAILED_RUNS = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.EXPIRED})


class Triggered(BaseModel):
    id: str
    isCached: bool


class BatchCreated(BaseModel):
    id: str
    runCount: int
    isCached: bool


class ItemsAccepted(BaseModel):
    id: str
    itemsAccepted: int
    itemsDeduplicated: int
    sealed: bool


class BatchRun(BaseModel):
    id: str
    taskIdentifier: str
    isCached: bool
    idempotencyKey: str | None = None


class BatchV2Created(BaseModel):
    """`{id, runCount}` as SDK 4.x reads it, plus the runs (what older SDKs read)."""

    id: str
    runCount: int
    isCached: bool
    runs: list[BatchRun]


class BatchStatus(StrEnum):
    PENDING = "PENDING"  # not every item arrived yet
    PROCESSING = "PROCESSING"  # some runs have not finished
    COMPLETED = "COMPLETED"  # every run finished, none failed
    PARTIAL_FAILED = "PARTIAL_FAILED"  # every run finished, some FAILED, TIMED_OUT or EXPIRED
    ABORTED = "ABORTED"  # never: Tether does not abort batches


class BatchProcessing(BaseModel):
    completedAt: IsoDate | None = None
    errors: list[dict[str, Any]] = []


class BatchObject(BaseModel):
    id: str
    status: BatchStatus
    idempotencyKey: str | None = None
    createdAt: IsoDate
    updatedAt: IsoDate
    runCount: int
    runs: list[str]
    processing: BatchProcessing


# -- building runs ----------------------------------------------------------------------------
def _link_parent(tether: Tether, new: NewRun, parent_id: str | None) -> None:
    if not parent_id:
        return
    parent = tether.storage.get_run(parent_id)
    if parent is None:
        raise ConfigurationError(f"options.parentRunId: no run with id {parent_id!r}")
    new.parent_id, new.root_id, new.depth = parent.id, parent.root_id or parent.id, parent.depth + 1


def new_run(tether: Tether, task_id: str, payload: Any, opts: TriggerOptionsBody | None,
            now: float) -> NewRun:
    """A validated row for a run of `task_id`. 404 for an unknown task; 422 for a payload or
    option that does not hold."""
    try:
        spec, validate = tether.spec_for(task_id)
    except UnknownTask as exc:
        raise ApiError(404, f"Task not found: {exc}") from None
    value = decode_payload(tether, payload, opts.payloadType if opts else None)
    [new] = build_runs(spec, validate, [(value, trigger_options(opts))], now,
                       tether.max_payload_size, tether.objects)
    if opts is not None and opts.maxDuration is not None:
        new.max_duration = opts.maxDuration
    _link_parent(tether, new, opts.parentRunId if opts else None)
    tether._ensure_queue(spec.queue, now)
    return new


def _for_item(label: str, make: Callable[[], NewRun]) -> NewRun:
    """`make()`, with `label` in front of the message of an error it raises."""
    try:
        return make()
    except ApiError as exc:
        raise ApiError(exc.status_code, f"{label}: {exc.message}") from None
    except TetherError as exc:  # a payload or an option that does not hold
        raise ApiError(status_for(exc), f"{label}: {exc}") from None


def trigger_one(tether: Tether, task_id: str, body: TriggerBody,
                trace_context: str | None = None) -> Triggered:
    """`trace_context`: the request's (observe/tracing.incoming), which the run joins."""
    now = tether.clock.now()
    new = new_run(tether, task_id, body.payload, body.options, now)
    storage = tether.storage
    span = start_trigger(task_id, new.queue, [new], trace_context)
    results = stored(span, lambda: storage.create_runs([new], now))
    record, created = results[0]
    count_triggered([(record, created)])
    if created:
        tether.queues.after_trigger(tether.spec_for(task_id)[0].queue, [record])
    return Triggered(id=record.id, isCached=not created)


def request_trace(request: Request) -> str | None:
    """The trace context of a request's `traceparent` / `tracestate` headers (as the
    Trigger.dev SDK sends them), to store with the runs it triggers."""
    return incoming(request.headers.get("traceparent"), request.headers.get("tracestate"))


def _batch(tether: Tether, batch_id: str) -> BatchRecord:
    batch = tether.storage.get_batch(batch_id)
    if batch is None:
        raise ApiError(404, f"no batch with id {batch_id!r}")
    return batch


def _item_runs(tether: Tether, items: list[tuple[int, BatchItemBody]],
               now: float) -> list[tuple[int, NewRun]]:
    def make(item: BatchItemBody) -> Callable[[], NewRun]:
        return lambda: new_run(tether, item.task, item.payload, item.options, now)

    return [(index, _for_item(f"item {index}", make(item))) for index, item in items]


def _traced_batch(tether: Tether, batch_id: str, runs: list[tuple[int, NewRun]], now: float,
                  trace_context: str | None) -> list[tuple[int, RunRecord, bool]]:
    """add_batch_runs, under one trigger span for the batch's runs (tracing on), or with the
    request's trace context stored as it came."""
    news = [new for _, new in runs]
    tasks, queues = {new.task_id for new in news}, {new.queue for new in news}
    span = start_trigger(tasks.pop() if len(tasks) == 1 else "batch",
                         queues.pop() if len(queues) == 1 else "batch", news, trace_context)
    results = stored(span, lambda: tether.storage.add_batch_runs(batch_id, runs, now))
    count_triggered((record, created) for _, record, created in results)
    tether.queues.after_trigger(None, [record for _, record, created in results if created])
    return results


def add_items(tether: Tether, batch_id: str, lines: list[BatchLine],
              trace_context: str | None = None) -> ItemsAccepted:
    batch = _batch(tether, batch_id)
    beyond = sorted({line.index for line in lines if line.index >= batch.run_count})
    if beyond:
        raise ApiError(422, f"item index(es) {beyond[:10]} out of range: batch {batch_id} "
                            f"has runCount {batch.run_count} (indexes 0 to {batch.run_count - 1})")
    now = tether.clock.now()
    runs = _item_runs(tether, [(line.index, line) for line in lines], now)
    if runs:
        _traced_batch(tether, batch_id, runs, now, trace_context)
    after = _batch(tether, batch_id)
    accepted = max(0, after.items_accepted - batch.items_accepted)
    return ItemsAccepted(id=batch_id, itemsAccepted=accepted,
                         itemsDeduplicated=max(0, len(lines) - accepted),
                         sealed=after.items_accepted >= after.run_count)


def batch_v2(tether: Tether, body: BatchV2Body,
             trace_context: str | None = None) -> BatchV2Created:
    now = tether.clock.now()
    runs = _item_runs(tether, list(enumerate(body.items)), now)
    batch, _ = tether.storage.create_batch(
        BatchRecord(id=new_id("batch"), run_count=len(runs), idempotency_key=None,
                    created_at=now, updated_at=now))
    results = _traced_batch(tether, batch.id, runs, now, trace_context)
    return BatchV2Created(id=batch.id, runCount=len(runs), isCached=False, runs=[
        BatchRun(id=r.id, taskIdentifier=r.task_id, isCached=not created,
                 idempotencyKey=r.idempotency_key) for _, r, created in results])


def _batch_status(batch: BatchRecord, records: list[RunRecord]) -> BatchStatus:
    if batch.items_accepted < batch.run_count:
        return BatchStatus.PENDING
    if not all(RunStatus(r.status).is_final for r in records):
        return BatchStatus.PROCESSING
    if any(r.status in FAILED_RUNS for r in records):
        return BatchStatus.PARTIAL_FAILED
    return BatchStatus.COMPLETED


def batch_object(tether: Tether, batch_id: str) -> BatchObject:
    batch = _batch(tether, batch_id)
    ids = tether.storage.batch_run_ids(batch_id)
    sealed = batch.items_accepted >= batch.run_count
    return BatchObject(
        id=batch.id, status=_batch_status(batch, tether.storage.get_runs(ids)),
        idempotencyKey=batch.idempotency_key, createdAt=iso(batch.created_at),
        updatedAt=iso(batch.updated_at), runCount=batch.run_count, runs=ids,
        processing=BatchProcessing(completedAt=iso(batch.updated_at) if sealed else None))


# -- the NDJSON body --------------------------------------------------------------------------
def _line(number: int, text: str) -> BatchLine:
    try:
        return BatchLine.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:  # 400, as for any body that is not JSON
        raise ApiError(400, f"line {number} of the NDJSON body is not valid JSON: {exc.msg} at "
                            f"column {exc.colno}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(422, f"line {number} of the NDJSON body: {where}: {first.get('msg')}"
                            if where else f"line {number}: {first.get('msg')}") from None


async def ndjson_lines(request: Request, key: ApiKeyDep) -> list[BatchLine]:
    """The batch items of an NDJSON body (one `{"index", "task", "payload", "options"}` a line);
    read after the API key is checked."""
    body = await read_limited(
        request, MAX_PACKET_BYTES,
        lambda _size: f"a batch's items are at most {MAX_PACKET_BYTES} bytes a request")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "the NDJSON body is not UTF-8 text") from None
    return [_line(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _line_schema() -> dict[str, Any]:
    """BatchLine's JSON schema; the models it refers to are components already (TriggerBody)."""
    schema = BatchLine.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


NDJSON_BODY = {"requestBody": {"required": True, "content": {"application/x-ndjson": {
    "schema": _line_schema()}}}}

router = APIRouter(tags=["triggers"], dependencies=[Depends(plain_params)])


@router.post("/api/v1/tasks/{taskIdentifier}/trigger", response_model=Triggered,
             responses={404: {"description": "Task not found"}})
def trigger(taskIdentifier: str, body: TriggerBody, tether: TetherDep, key: ApiKeyDep,
            reply: ReplyDep, request: Request) -> Response:
    """Trigger a run of a task: `{id, isCached}` (`isCached`: an idempotency key matched a run
    that is still live, and that run is returned). A `traceparent` header (W3C trace context)
    puts the run's spans in that trace."""
    context = request_trace(request)
    return reply.answer(lambda: trigger_one(tether, taskIdentifier, body, context))


@router.post("/api/v3/batches", response_model=BatchCreated, status_code=202)
def create_batch(body: CreateBatchBody, tether: TetherDep, key: ApiKeyDep,
                 reply: ReplyDep) -> Response:
    """Open a batch of `runCount` items (sent next to `/api/v3/batches/{id}/items`)."""
    def create() -> BatchCreated:
        for task_id in body.taskIdentifiers or []:
            try:
                tether.spec_for(task_id)
            except UnknownTask as exc:
                raise ApiError(404, f"Task not found: {exc}") from None
        now = tether.clock.now()
        batch, created = tether.storage.create_batch(BatchRecord(
            id=new_id("batch"), run_count=body.runCount, idempotency_key=body.idempotencyKey,
            created_at=now, updated_at=now))
        return BatchCreated(id=batch.id, runCount=batch.run_count, isCached=not created)

    return reply.answer(create, status_code=202)


@router.post("/api/v3/batches/{batch_id}/items", response_model=ItemsAccepted,
             openapi_extra=NDJSON_BODY)
def batch_items(batch_id: str, lines: Annotated[list[BatchLine], Depends(ndjson_lines)],
                tether: TetherDep, reply: ReplyDep, request: Request) -> Response:
    """Add items to a batch; an index that already has a run is not run again (the SDK sends
    the whole stream again when it retries). `sealed` once every index has a run."""
    context = request_trace(request)
    return reply.answer(lambda: add_items(tether, batch_id, lines, context))


@router.post("/api/v2/tasks/batch", response_model=BatchV2Created, status_code=202)
def batch_trigger(body: BatchV2Body, tether: TetherDep, key: ApiKeyDep,
                  reply: ReplyDep, request: Request) -> Response:
    """Trigger up to 1000 runs in one request (SDK 4.0 to 4.3.0)."""
    context = request_trace(request)
    return reply.answer(lambda: batch_v2(tether, body, context), status_code=202)


@router.get("/api/v2/batches/{batch_id}", response_model=BatchObject,
            response_model_exclude_none=True)
def retrieve_batch(batch_id: str, tether: TetherDep, key: ApiKeyDep) -> BatchObject:
    """A batch and its runs by index. `status`: PENDING until every item arrived, PROCESSING
    until every run finished, then COMPLETED, or PARTIAL_FAILED when some run failed."""
    return batch_object(tether, batch_id)
