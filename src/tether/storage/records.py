"""Plain records passed between the engine and a storage backend. JSON columns stay as text here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Any

from tether.models import Run, RunStatus, to_datetime
from tether.objects.references import is_reference
from tether.serialization import loads


@dataclass
class RunRecord:
    """One row of the runs table, as stored."""

    id: str
    task_id: str
    queue: str
    status: str
    payload: str
    output: str | None
    error: str | None
    state: str | None
    metadata: str
    tags: str
    idempotency_key: str | None
    idempotency_active: int
    idempotency_expires_at: float | None
    concurrency_key: str
    priority: int
    attempts: int
    max_attempts: int
    retry: str
    max_duration: float | None
    available_at: float
    expires_at: float | None
    lease_token: str | None
    attempt_started_at: float | None
    lease_expires_at: float | None
    worker_id: str | None
    parent_id: str | None
    root_id: str | None
    depth: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    waiting_for: str | None = None  # what the run waits or last waited for (see 0002_waits)
    resolves: str | None = None  # a child run: the parent's wait group it counts toward
    debounce_key: str | None = None
    version: str | None = None  # the code version of the worker that first executed it
    trace_context: str | None = None  # W3C traceparent [+ "\n" tracestate] at trigger time
    rate_key: str | None = None  # its queue's rate-limit key, from a function of the payload
    # not a column: set by finish_attempts when the commit that ended this attempt gave its slot
    # to the run held in line for it (`Finish.successor`)
    handed_over: bool = False

    @classmethod
    def from_mapping(cls, row: Any) -> RunRecord:
        """A row read by column name (extra columns are ignored)."""
        return cls(*_pick_columns(row))  # (by position: a third of the time of keywords)

    def to_run(self, light: bool = False) -> Run:
        """The public view. `light`: values kept in the object store are not read (None, and
        {} for metadata): for pages that show their size and a link instead (the dashboard)."""
        value = _light if light else loads
        return Run(
            id=self.id,
            task_id=self.task_id,
            status=RunStatus(self.status),
            payload=value(self.payload),
            output=value(self.output),
            error=loads(self.error),
            attempts=self.attempts,
            tags=loads(self.tags),
            metadata=value(self.metadata) if not light or not is_reference(self.metadata) else {},
            idempotency_key=self.idempotency_key,
            parent_id=self.parent_id,
            root_id=self.root_id,
            created_at=to_datetime(self.created_at),  # type: ignore[arg-type]
            started_at=to_datetime(self.started_at),
            finished_at=to_datetime(self.finished_at),
            queue=self.queue,
            concurrency_key=self.concurrency_key or None,
            priority=self.priority,
            max_attempts=self.max_attempts,
            available_at=to_datetime(self.available_at),
            updated_at=to_datetime(self.updated_at),
            version=self.version,
            trace_context=self.trace_context,
        )


def _light(text: str | None) -> Any:
    return None if is_reference(text) else loads(text)


RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord) if f.name != "handed_over")
_pick_columns = itemgetter(*RUN_COLUMNS)  # a row's values in RunRecord's field order


@dataclass(frozen=True)
class Lease:
    """Proof that a worker owns a run's current attempt. Every write of the attempt carries it."""

    run_id: str
    token: str
    attempt: int
    worker_id: str


@dataclass
class ClaimRequest:
    """Which runs a worker may claim now, and how many."""

    worker_id: str
    task_ids: list[str]
    queues: list[str] | None
    limit: int
    now: float
    lease_seconds: float
    # (queue, concurrency key, n): also take up to n runs of that full limited queue "in line",
    # each to start the moment one of this worker's runs there ends and hand its slot over
    # (a storage may grant none)
    standby: list[tuple[str, str, int]] = field(default_factory=list)
    version: str | None = None  # the worker's code version: a run's first claim records it
    # tasks whose runs any version may go on with; the others' runs with durable history (a
    # stored step, wait or child) are claimed only by workers of their own version
    unpinned: list[str] = field(default_factory=list)


@dataclass
class ClaimedRun:
    record: RunRecord
    lease: Lease
    resumed: bool  # the run executed before, so it may have stored steps
    standby: bool = False  # claimed in line, without a slot of its limited queue (see Finish)


@dataclass
class StepRecord:
    key: str
    name: str
    kind: str  # "step" or "once"
    status: str  # "STARTED", "COMPLETED" or "FAILED"
    output: str | None
    error: str | None
    attempt: int
    started_at: float
    finished_at: float | None
    seq: int | None = None  # the position at which the run's code reached it


@dataclass
class TokenRecord:
    """A waitpoint token: a run waits until someone completes it (or it times out)."""

    id: str
    run_id: str | None
    status: str  # "WAITING", "COMPLETED" or "TIMED_OUT"
    output: str | None
    timeout_at: float | None
    idempotency_key: str | None
    tags: str
    created_at: float
    completed_at: float | None
    idempotency_expires_at: float | None = None  # None: the key never expires
    idempotency_active: int = 0  # 1 while the key finds this token


@dataclass
class AttemptRecord:
    id: str
    run_id: str
    number: int
    worker_id: str | None
    status: str
    started_at: float
    finished_at: float | None
    error: str | None
    next_status: str | None = None  # the run's status after this attempt, and why
    reason: str | None = None


@dataclass
class EventRecord:
    id: int
    run_id: str
    at: float
    kind: str
    attempt: int | None
    name: str
    data: str


@dataclass
class LogLine:
    at: float
    attempt: int
    level: str
    message: str
    logger: str


@dataclass
class Flush:
    """Buffered, non-critical writes of a running attempt: metadata and log lines."""

    metadata: str | None = None
    logs: list[LogLine] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.metadata is not None or bool(self.logs)


@dataclass(frozen=True)
class WaitPart:
    """One thing a run parked on several waits at once still waits for (migration 0021's
    wait_parts): a token id, a child group id, or "time:<key>" (over only by time). `due_at`:
    over at this time even without an event (a sleep's end, a token's timeout); None: only by
    its event."""

    part: str
    due_at: float | None


def gather_due(parts: list[WaitPart]) -> float | None:
    """When a gather with these parts is over by time: the latest due_at, 9999-12-31 (the
    engine's NEVER) while one has none; None for no parts."""
    if not parts:
        return None
    return max(253402300799.0 if part.due_at is None else part.due_at for part in parts)


@dataclass
class Finish:
    """The end of one attempt: the transition to apply, fenced by the lease, with last writes."""

    lease: Lease
    transition: Any  # engine.states.Transition (not imported: records stay free of the engine)
    flush: Flush | None = None
    step: StepRecord | None = None  # a wait's row, written with a move to WAITING
    # a run this worker holds in line for this attempt's slot: it takes the slot over (if it
    # still holds its lease) instead of the slot going back; the worker starts it after the
    # commit, or before while its leases keep the slot its own (worker/handover.py)
    successor: Lease | None = None
    # a takeover of an expired lease (the reaper): applied only if the lease, as stored when the
    # row is written, expired before this time, so a renewal that came first wins
    expired_before: float | None = None

    def plain(self) -> bool:
        """Whether the end is its transition alone: no last writes, no wait, no successor (the
        stores end such attempts with a statement of their own)."""
        return (self.flush is None and self.step is None and self.successor is None
                and not self.transition.waiting_for)


@dataclass
class NewRun:
    id: str
    task_id: str
    queue: str
    status: str
    payload: str
    metadata: str
    tags: list[str]
    idempotency_key: str | None
    idempotency_expires_at: float | None
    concurrency_key: str
    priority: int
    max_attempts: int
    retry: str
    max_duration: float | None
    available_at: float
    expires_at: float | None
    parent_id: str | None = None
    root_id: str | None = None
    depth: int = 0
    resolves: str | None = None
    debounce_key: str | None = None  # collapse into the DELAYED run of this task with this key
    debounce_trailing: bool = True  # ... taking this payload (else keeping the first one)
    debounce_max: float | None = None  # ... starting at most this long after that run's creation
    trace_context: str | None = None  # W3C traceparent [+ "\n" tracestate] (observe/tracing.py)
    rate_key: str | None = None  # the queue's rate-limit key when a function of the payload says it


@dataclass
class TaskRecord:
    id: str
    queue: str
    options: str  # JSON: retry, max_duration, concurrency, payload_schema
    code_version: str
    updated_at: float


@dataclass
class RunFilter:
    status: list[str] | None = None
    task_id: list[str] | None = None
    tag: list[str] | None = None
    queue: list[str] | None = None
    created_after: float | None = None
    created_before: float | None = None
    before_id: str | None = None  # cursor: runs older than this id
    parent_id: str | None = None
    batch_id: str | None = None  # only runs created in this batch
    newer_than_id: str | None = None  # cursor back: the `limit` runs just newer than this id, newest first
    waiting_for: str | None = None  # runs whose wait (a token id, a child group) is this
    limit: int = 25


@dataclass
class WorkerRecord:
    id: str
    hostname: str
    pid: int
    queues: str
    concurrency: int
    started_at: float
    last_seen_at: float
    stopped_at: float | None
    version: str | None = None  # the code version the worker runs (Tether(version=...))
    running: int = 0  # attempts in hand at its last heartbeat
    stalled_since: float | None = None  # its event loop has not answered since then
    stalls: int = 0  # how many times its event loop stalled
    last_claim_at: float | None = None  # when a claim last gave it a run
    tasks: str | None = None  # JSON list of the task ids it serves


@dataclass(frozen=True)
class WorkerBeat:
    """What a heartbeat writes besides `last_seen_at`: a worker's state held in memory."""

    running: int
    last_claim_at: float | None
    stalled_since: float | None
    stalls: int


# Trigger.dev's idempotency rule, the same on every channel (Python, CLI, HTTP, batches, child
# runs): a key whose run ended in one of these is free again, so the next trigger with it makes a
# new run. CANCELED and COMPLETED runs keep their keys. (Trigger.dev also frees CRASHED and
# SYSTEM_FAILURE runs' keys; no Tether run ends in those.)
KEY_FREED_BY = frozenset({RunStatus.FAILED.value, RunStatus.TIMED_OUT.value,
                          RunStatus.EXPIRED.value})


def key_holds(record: RunRecord, now: float) -> bool:
    """Whether `record`'s active idempotency key still returns it to a new trigger: its TTL has
    not passed and it did not end FAILED, TIMED_OUT or EXPIRED. Both stores release a key that
    no longer holds (idempotency_active = 0) in the transaction that makes the new run."""
    expired = record.idempotency_expires_at is not None and record.idempotency_expires_at <= now
    return not expired and record.status not in KEY_FREED_BY


def new_record(new: NewRun, tags_json: str, idempotency_active: int, now: float) -> RunRecord:
    """The row a just-inserted run has, built without reading it back."""
    return RunRecord(
        id=new.id, task_id=new.task_id, queue=new.queue, status=new.status, payload=new.payload,
        output=None, error=None, state=None, metadata=new.metadata, tags=tags_json,
        idempotency_key=new.idempotency_key, idempotency_active=idempotency_active,
        idempotency_expires_at=new.idempotency_expires_at, concurrency_key=new.concurrency_key,
        priority=new.priority, attempts=0, max_attempts=new.max_attempts, retry=new.retry,
        max_duration=new.max_duration, available_at=new.available_at, expires_at=new.expires_at,
        lease_token=None, attempt_started_at=None, lease_expires_at=None, worker_id=None,
        parent_id=new.parent_id, root_id=new.root_id, depth=new.depth, created_at=now,
        updated_at=now, started_at=None, finished_at=None, resolves=new.resolves,
        debounce_key=new.debounce_key, trace_context=new.trace_context)


def status_event(run_id: str, now: float, attempt: int | None, to: str, reason: str,
                 source: str | None = None) -> tuple[object, ...]:
    """An events-table row recording a transition that no attempt row records."""
    data: dict[str, Any] = {"reason": reason}
    if source:
        data["from"] = source
    return (run_id, now, "status", attempt, to, json.dumps(data))


FORKED_FROM = "tether.forked_from"  # a forked run's metadata: {"run_id": ..., "from_step": ...}


def forked(record: RunRecord) -> bool:
    """Whether a run may hold steps copied by a fork before it ever executed (a cheap test on
    the metadata's text: a false positive only costs one read of its steps)."""
    return FORKED_FROM in record.metadata


@dataclass
class Fork:
    """A new run that starts with a copy of another run's durable calls stored before position
    `before_seq` (with their positions): its first attempt replays them (runs.fork)."""

    run: NewRun
    source_id: str
    before_seq: int
    reason: str  # the text of the new run's FORKED event
    # (step key, output) for copied steps whose output is a reference: the new run's own copy
    # of the object (written before), so purging the source run leaves the fork whole
    outputs: tuple[tuple[str, str], ...] = ()

    def event(self, now: float) -> tuple[object, ...]:
        data = {"reason": self.reason, "forked_from": self.source_id}
        return (self.run.id, now, "status", None, "FORKED", json.dumps(data))
