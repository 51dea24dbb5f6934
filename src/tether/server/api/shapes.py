"""The run object of Trigger.dev's management API, built from Tether's stored runs.

`GET /api/v3/runs/{id}` answers `RunObject`; `GET /api/v1/runs` a page of `ListRunItem`s. The
SDK validates both strictly: optional fields are left out (never null), `status` is one of its
enum, dates are ISO-8601 strings in UTC with milliseconds and a `Z`.

How Tether's rows map:
- `status`: Tether's statuses are a subset of the SDK's (`RunStatusName`); `isQueued` is QUEUED or
  DELAYED, `isFailed` FAILED, TIMED_OUT or EXPIRED (and the SDK's CRASHED, SYSTEM_FAILURE),
  `isCompleted` every final status.
- `durationMs`: wall-clock time from the run's first start to its end (to now while EXECUTING, to
  the last change while WAITING); Tether does not meter compute time. `costInCents` is always 0.
- `attemptCount`: the number of the run's current attempt (a wait does not use up an attempt).
- `triggerFunction`: a child run that its parent waits for through `batch_trigger_and_wait` is
  `batchTriggerAndWait`, through `trigger_and_wait` `triggerAndWait` (the wait group in
  `RunRecord.resolves` says which); a run created in an HTTP batch is `batchTrigger`; any other
  run `trigger`.
- `ttl` (as "90s", "10m", "2h", "1d"): shown while the run has not started; once it started,
  the stored expiry no longer tells the ttl it was given.
- `delayedUntil`: while DELAYED, and for a run that has not started yet and became ready later
  than it was created.
- `schedule`: for a run a schedule created (its `schedule:ID` tag), while the schedule exists.
- Tether's own additions, which the SDK ignores: `queue: {name, type}`, `concurrencyKey`,
  `priority`, `maxAttempts`. A queue named after the run's task is its default queue (type
  "task"), any other is "custom", as `GET /api/v1/queues` types them.
- `filter[queue]` takes the names runs show, plain or as the SDK sends `{type, name}`: `task/echo`
  (its `task/` prefix) or `team/exports` (`custom/` is accepted too); see `queue_names`.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal, overload

from pydantic import BaseModel, WithJsonSchema

from tether.durations import duration_text
from tether.models import RunStatus
from tether.serialization import loads
from tether.server.api.common import iso_at
from tether.server.api.schedules import describe
from tether.storage.base import Storage
from tether.storage.records import RunFilter, RunRecord

ENV = {"id": "env_tether", "name": "tether"}
MAX_CHILDREN = 100  # related runs listed in a run object
SCHEDULE_TAG = "schedule:"  # the tag a schedule's runs carry (worker/scheduler.py)

IsoDate = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class RunStatusName(StrEnum):
    """The SDK's run statuses. Tether uses DELAYED, QUEUED, EXECUTING, WAITING and the finals
    COMPLETED, FAILED, CANCELED, TIMED_OUT, EXPIRED; the others never occur but are accepted in
    filters."""

    PENDING_VERSION = "PENDING_VERSION"
    DELAYED = "DELAYED"
    QUEUED = "QUEUED"
    DEQUEUED = "DEQUEUED"
    EXECUTING = "EXECUTING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    SYSTEM_FAILURE = "SYSTEM_FAILURE"
    EXPIRED = "EXPIRED"
    TIMED_OUT = "TIMED_OUT"


class TriggerFunction(StrEnum):
    trigger = "trigger"
    triggerAndWait = "triggerAndWait"
    batchTrigger = "batchTrigger"
    batchTriggerAndWait = "batchTriggerAndWait"


FINAL = frozenset({"COMPLETED", "CANCELED", "FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED",
                   "TIMED_OUT"})
FAILED = frozenset({"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"})


QUEUE_PREFIXES = ("task/", "custom/")  # how the SDK (and Trigger.dev) type a queue's name


class QueueRef(BaseModel):
    name: str
    type: Literal["task", "custom"]


def queue_ref(record: RunRecord) -> QueueRef:
    return QueueRef(name=record.queue, type="task" if record.queue == record.task_id else "custom")


def queue_names(names: list[str] | None) -> list[str] | None:
    """The queue names a `filter[queue]` list may mean: each as given and, when it carries the
    SDK's `task/` or `custom/` prefix, without it (the SDK sends `{type: "task", name: "echo"}`
    as `task/echo`; Tether names a task's queue `echo`)."""
    if names is None:
        return None
    out: list[str] = []
    for name in names:
        out.append(name)
        out += [name[len(p):] for p in QUEUE_PREFIXES if name.startswith(p) and len(name) > len(p)]
    return list(dict.fromkeys(out))


class EnvDetails(BaseModel):
    id: str
    name: str


class SerializedError(BaseModel):
    message: str
    name: str | None = None
    stackTrace: str | None = None


class RunBase(BaseModel):
    """The fields every run shape shares (the SDK's CommonRunFields)."""

    id: str
    status: RunStatusName
    taskIdentifier: str
    idempotencyKey: str | None = None
    version: str | None = None
    traceContext: dict[str, str] | None = None  # Tether's: the W3C context the run's spans join
    isQueued: bool
    isExecuting: bool
    isWaiting: bool
    isCompleted: bool
    isSuccess: bool
    isFailed: bool
    isCancelled: bool
    isTest: bool = False
    createdAt: IsoDate
    updatedAt: IsoDate
    startedAt: IsoDate | None = None
    finishedAt: IsoDate | None = None
    delayedUntil: IsoDate | None = None
    ttl: str | None = None
    expiredAt: IsoDate | None = None
    tags: list[str]
    costInCents: float = 0
    baseCostInCents: float = 0
    durationMs: float
    metadata: dict[str, Any] | None = None
    queue: QueueRef
    concurrencyKey: str | None = None
    priority: int = 0
    maxAttempts: int = 1


class ScheduleGenerator(BaseModel):
    type: Literal["CRON"] = "CRON"
    expression: str
    description: str


class RunSchedule(BaseModel):
    """The schedule that created a run (its `schedule:ID` tag)."""

    id: str
    externalId: str | None = None
    deduplicationKey: str | None = None
    generator: ScheduleGenerator


class RelatedRun(RunBase):
    depth: int
    triggerFunction: TriggerFunction
    batchId: str | None = None


class RelatedRuns(BaseModel):
    root: RelatedRun | None = None
    parent: RelatedRun | None = None
    children: list[RelatedRun] = []


class RunObject(RelatedRun):
    """`GET /api/v3/runs/{id}`. `payload` is the decoded JSON value; `output` only when
    COMPLETED; `error` when the run ended otherwise (FAILED, TIMED_OUT, ...)."""

    payload: Any = None
    output: Any = None
    error: SerializedError | None = None
    schedule: RunSchedule | None = None
    relatedRuns: RelatedRuns
    attemptCount: int


class ListRunItem(RunBase):
    env: EnvDetails


class Pagination(BaseModel):
    next: str | None = None
    previous: str | None = None


class RunPage(BaseModel):
    data: list[ListRunItem]
    pagination: Pagination


@overload
def iso(ts: float) -> str: ...


@overload
def iso(ts: float | None) -> str | None: ...


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 in UTC with milliseconds: 2024-05-01T12:00:00.000Z."""
    return iso_at(ts)


def _duration_ms(record: RunRecord, now: float) -> float:
    if record.started_at is None:
        return 0
    if record.finished_at is not None:
        end = record.finished_at
    elif record.status == RunStatus.EXECUTING:
        end = now
    else:
        end = record.updated_at
    return max(0.0, round((end - record.started_at) * 1000, 3))


def _not_started(record: RunRecord) -> bool:
    return record.started_at is None and record.attempts == 0


def _ttl(record: RunRecord) -> str | None:
    if record.expires_at is None or not _not_started(record):
        return None
    return duration_text(max(0.0, record.expires_at - record.available_at))


def _delayed_until(record: RunRecord) -> str | None:
    if record.status == RunStatus.DELAYED or (
            _not_started(record) and record.available_at > record.created_at + 0.001):
        return iso(record.available_at)
    return None


def _flags(status: str) -> dict[str, bool]:
    return {"isQueued": status in ("QUEUED", "DELAYED", "PENDING_VERSION"),
            "isExecuting": status in ("EXECUTING", "DEQUEUED"),
            "isWaiting": status == "WAITING",
            "isCompleted": status in FINAL,
            "isSuccess": status == "COMPLETED",
            "isFailed": status in FAILED,
            "isCancelled": status == "CANCELED"}


def common_fields(record: RunRecord, now: float) -> dict[str, Any]:
    """The CommonRunFields of a run, as keyword arguments for any of the run shapes."""
    metadata = loads(record.metadata)
    return {
        "id": record.id, "status": RunStatusName(record.status), "taskIdentifier": record.task_id,
        "idempotencyKey": record.idempotency_key, **_flags(record.status),
        "createdAt": iso(record.created_at), "updatedAt": iso(record.updated_at),
        "startedAt": iso(record.started_at), "finishedAt": iso(record.finished_at),
        "delayedUntil": _delayed_until(record), "ttl": _ttl(record),
        "expiredAt": iso(record.finished_at) if record.status == RunStatus.EXPIRED else None,
        "tags": sorted(loads(record.tags) or []), "durationMs": _duration_ms(record, now),
        "metadata": metadata if isinstance(metadata, dict) and metadata else None,
        "queue": queue_ref(record), "concurrencyKey": record.concurrency_key or None,
        "priority": record.priority, "maxAttempts": record.max_attempts,
        "version": record.version, "traceContext": trace_context(record.trace_context),
    }


def trace_context(stored: str | None) -> dict[str, str] | None:
    """A stored trace context as the headers it came from: traceparent, and tracestate."""
    if not stored:
        return None
    parent, _, state = stored.partition("\n")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def trigger_function(record: RunRecord, batch_id: str | None) -> TriggerFunction:
    if record.resolves:
        if "_batch_trigger_and_wait:" in record.resolves:
            return TriggerFunction.batchTriggerAndWait
        return TriggerFunction.triggerAndWait
    return TriggerFunction.batchTrigger if batch_id else TriggerFunction.trigger


def related_run(record: RunRecord, batch_id: str | None, now: float) -> RelatedRun:
    return RelatedRun(**common_fields(record, now), depth=record.depth,
                      triggerFunction=trigger_function(record, batch_id), batchId=batch_id)


def list_item(record: RunRecord, now: float) -> ListRunItem:
    return ListRunItem(**common_fields(record, now), env=EnvDetails(**ENV))


def _error(record: RunRecord) -> SerializedError | None:
    status = RunStatus(record.status)
    if not status.is_final or status == RunStatus.COMPLETED or record.error is None:
        return None  # a run between attempts keeps its last error, but has not failed
    error = loads(record.error)
    if not isinstance(error, dict):
        return SerializedError(message=str(error))
    return SerializedError(message=str(error.get("message") or record.status.lower()),
                           name=error.get("type"), stackTrace=error.get("traceback"))


def _schedule(storage: Storage, record: RunRecord) -> RunSchedule | None:
    ids = [t.removeprefix(SCHEDULE_TAG) for t in loads(record.tags) or [] if t.startswith(SCHEDULE_TAG)]
    found = storage.get_schedule(ids[0]) if ids else None
    if found is None:
        return None
    return RunSchedule(id=found.id, externalId=found.external_id,
                       deduplicationKey=found.deduplication_key,
                       generator=ScheduleGenerator(expression=found.cron,
                                                   description=describe(found.cron)))


def _related(storage: Storage, record: RunRecord, now: float) -> RelatedRuns:
    """The run's root and parent (when it has them) and its newest children."""
    related = RelatedRuns()
    ids = [i for i in (record.root_id, record.parent_id) if i and i != record.id]
    found = {r.id: r for r in storage.get_runs(list(dict.fromkeys(ids)))}
    if record.root_id in found:
        root = found[record.root_id]
        related.root = related_run(root, storage.batch_of(root.id), now)
    if record.parent_id in found:
        parent = found[record.parent_id]
        related.parent = related_run(parent, storage.batch_of(parent.id), now)
    children = storage.list_runs(RunFilter(parent_id=record.id, limit=MAX_CHILDREN))
    # a child run is created by its parent's code, never in an HTTP batch
    related.children = [related_run(child, None, now) for child in children]
    return related


def run_object(storage: Storage, record: RunRecord, now: float | None = None) -> RunObject:
    """The full run object: decoded payload, output (COMPLETED only), error, related runs."""
    now = time.time() if now is None else now
    batch_id = storage.batch_of(record.id)
    completed = record.status == RunStatus.COMPLETED
    return RunObject(
        **common_fields(record, now), depth=record.depth,
        triggerFunction=trigger_function(record, batch_id), batchId=batch_id,
        payload=loads(record.payload), output=loads(record.output) if completed else None,
        error=_error(record), schedule=_schedule(storage, record),
        relatedRuns=_related(storage, record, now),
        attemptCount=record.attempts)
