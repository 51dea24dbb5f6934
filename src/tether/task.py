"""A task: a plain function plus the options written next to it. Registered by `@app.task`."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tether.cron import CronSpec, cron_spec
from tether.durations import Duration
from tether.errors import ConfigurationError, PayloadError
from tether.limits import parse_size
from tether.options import BatchItem, Queue, RateLimit, Retry, stored_key
from tether.storage.queue_records import QueueRecord
from tether.storage.records import TaskRecord

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.handles import RunHandle

T = TypeVar("T")
R = TypeVar("R")

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")

Hook = Callable[..., Any]


def _payload_model(fn: Callable[..., Any]) -> type | None:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise ConfigurationError(f"task function {fn.__qualname__} must take a payload parameter")
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:  # unresolvable string annotations: no validation
        hints = {}
    model = hints.get(params[0].name)
    if isinstance(model, type) and callable(getattr(model, "model_validate", None)):
        return model
    return None


def location(path: Iterable[Any]) -> str:
    """Where in a payload: keys joined by dots, list positions in brackets (`items[2].name`)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def invalid_payload(task_id: str, where: str, reason: str, more: int) -> PayloadError:
    """The one message an invalid payload gets on every channel (Python, HTTP, CLI), whichever
    validator found it: `payload for task 'signup' is invalid at age: <reason>`."""
    at = f" at {where}" if where else ""
    others = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return PayloadError(f"payload for task {task_id!r} is invalid{at}: {reason}{others}")


def schema_problem(error: Any) -> tuple[str, str]:
    """A JSON schema error as (location, reason), placed as Pydantic places it: a missing or
    unexpected property at its own name ("Field required", "Extra inputs are not permitted")."""
    path = list(error.absolute_path)
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in instance]
        if missing:
            return location([*path, missing[0]]), "Field required"
    if error.validator == "additionalProperties" and error.validator_value is False \
            and "patternProperties" not in error.schema:
        known = error.schema.get("properties", {})
        extra = [name for name in instance if name not in known]
        if extra:
            return location([*path, extra[0]]), "Extra inputs are not permitted"
    return location(path), str(error.message)


def _code_version(fn: Callable[..., Any]) -> str:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = fn.__qualname__
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _declared_schedule(task_id: str, cron: str | None, timezone: str | None,
                       missed: str) -> CronSpec | None:
    """`@app.task(cron=..., timezone=..., cron_missed=...)`, validated when the decorator runs."""
    if cron is None:
        if timezone is not None or missed != "once":
            raise ConfigurationError(f"task {task_id!r}: timezone and cron_missed need cron=")
        return None
    return cron_spec(cron, timezone or "UTC", missed, where=f"task {task_id!r}")


IN_WORKER = "none"  # isolation: attempts run in the worker's own process (the default)
IN_PROCESS = "process"  # isolation: attempts run in a child process of the worker
ISOLATIONS = (IN_WORKER, IN_PROCESS)


def isolation_setting(task_id: str, isolation: str) -> str:
    """`@app.task(isolation=...)`: "none" (the default) or "process"."""
    if isolation not in ISOLATIONS:
        raise ConfigurationError(f"task {task_id!r}: isolation must be 'none' (attempts run in "
                                 f"the worker's process) or 'process' (in a child process), "
                                 f"got {isolation!r}")
    return isolation


def memory_setting(task_id: str, isolation: str, limit: int | str | None) -> int | None:
    """`@app.task(memory_limit=...)` in bytes (None: no limit); only with isolation="process",
    where a child process can be held to it."""
    if limit is None:
        return None
    if isolation != IN_PROCESS:
        raise ConfigurationError(f"task {task_id!r}: memory_limit needs isolation='process' "
                                 "(only a child process can be held to a memory limit)")
    return parse_size(limit, f"memory_limit of task {task_id!r}")


@dataclass(frozen=True)
class TaskSpec:
    """What creating a run of a task needs: from code (a `Task`) or from the registry table."""

    id: str
    queue: Queue
    retry: Retry
    max_duration: float | None
    payload_schema: dict[str, Any] | None

    @functools.cached_property
    def retry_json(self) -> str:
        return json.dumps(self.retry.to_dict())

    @functools.cached_property
    def _schema_validator(self) -> Any:
        import jsonschema

        schema = self.payload_schema or {}
        return jsonschema.validators.validator_for(schema)(schema)

    def validate(self, payload: Any) -> Any:
        """Check a payload against the registry's JSON schema (a task's code is not loaded:
        `tether serve`, the CLI, `app.trigger` by id); the same message as `Task.validate`."""
        if self.payload_schema is None:
            return payload
        import jsonschema

        errors = list(self._schema_validator.iter_errors(payload))
        if errors:
            raise invalid_payload(self.id, *schema_problem(jsonschema.exceptions.best_match(errors)),
                                  len(errors) - 1)
        return payload

    def to_record(self, code_version: str, now: float) -> TaskRecord:
        queue = self.queue
        options: dict[str, Any] = {
            "retry": self.retry.to_dict(), "max_duration": self.max_duration,
            "concurrency": queue.concurrency, "payload_schema": self.payload_schema,
            "max_queued": queue.max_queued, "on_key_limit": queue.on_key_limit}
        if queue.total_concurrency is not None:
            options["total_concurrency"] = queue.total_concurrency
        if queue.rate_limit is not None:
            rate = queue.rate_limit
            options["rate_limit"] = {"limit": rate.limit, "period": rate.seconds,
                                     "burst": rate.burst, "scope": rate.scope}
        return TaskRecord(self.id, self.queue.name, json.dumps(options), code_version, now)

    @classmethod
    def from_record(cls, record: TaskRecord) -> TaskSpec:
        options = json.loads(record.options)
        rate = options.get("rate_limit")
        limit = None if rate is None else RateLimit(
            rate["limit"], rate["period"], rate["burst"],
            {"queue": None, "concurrency_key": "concurrency_key"}.get(rate["scope"], stored_key))
        queue = Queue(record.queue, options.get("concurrency"), limit,
                      options.get("total_concurrency"), max_queued=options.get("max_queued"),
                      on_key_limit=options.get("on_key_limit") or "queue")
        return cls(record.id, queue, Retry.from_dict(options.get("retry") or {}),
                   options.get("max_duration"), options.get("payload_schema"))


def queue_record(queue: Queue) -> QueueRecord:
    """The queues-table row of a queue as the code declares it."""
    rate = queue.rate_limit
    return QueueRecord(
        queue.name, queue.concurrency,
        rate_limit=None if rate is None else float(rate.limit),
        rate_period=None if rate is None else rate.seconds,
        rate_burst=None if rate is None else rate.burst,
        rate_scope=None if rate is None else rate.scope,
        total_concurrency=queue.total_concurrency, max_queued=queue.max_queued,
        on_key_limit=queue.on_key_limit)


class Task(Generic[T, R]):
    """A registered task. Call `.trigger(payload)` to start a run; the function itself is `.fn`."""

    def __init__(self, app: Tether, fn: Callable[..., Any], *, id: str | None = None,
                 retry: Retry | None = None, queue: Queue | str | None = None,
                 max_duration: timedelta | float | None = None, on_success: Hook | None = None,
                 on_failure: Hook | None = None, cron: str | None = None,
                 timezone: str | None = None, cron_missed: str = "once",
                 pin: bool | None = None, retention: Duration | EllipsisType | None = ...,
                 isolation: str = IN_WORKER, memory_limit: int | str | None = None,
                 respect_retry_after: bool = False) -> None:
        from tether.durations import seconds
        from tether.retention import retention_setting

        self.app = app
        self.fn = fn
        self.id = id or fn.__name__.replace("_", "-")
        if not _TASK_ID.match(self.id):
            raise ConfigurationError(
                f"task id {self.id!r} must be 1-128 letters, digits or . _ : / - characters")
        self.retry = retry or Retry()
        self.queue = Queue(queue) if isinstance(queue, str) else queue or Queue(self.id)
        self.max_duration = None if max_duration is None else seconds(max_duration, "max_duration")
        self.on_success = on_success
        self.on_failure = on_failure
        # runs with durable history go on only on a worker of the version that started them;
        # None: as the app says (Tether(pin=...))
        self.pin = pin
        # how long its finished runs are kept (None: forever); not given: the app's
        self.retention_set = retention is not ...
        self.retention = (None if isinstance(retention, EllipsisType)
                          else retention_setting(retention, f"retention of task {self.id!r}"))
        # where its attempts run: in the worker's process (its event loop, or a thread for a
        # sync function), or in a child process the worker keeps (tether/isolation/)
        self.isolation = isolation_setting(self.id, isolation)
        self.memory_limit = memory_setting(self.id, self.isolation, memory_limit)
        if not isinstance(respect_retry_after, bool):
            raise ConfigurationError(f"respect_retry_after of task {self.id!r} must be True or "
                                     f"False; got {respect_retry_after!r}")
        # an HTTP error (httpx, requests) for a 429 or 503 with Retry-After is back-pressure,
        # as RetryAfter is (tether/backpressure.py)
        self.respect_retry_after = respect_retry_after
        self.is_async = inspect.iscoroutinefunction(fn)
        self.takes_ctx = len(inspect.signature(fn).parameters) >= 2
        self.payload_model = _payload_model(fn)
        self.code_version = _code_version(fn)
        schema = None
        if self.payload_model is not None:
            schema = self.payload_model.model_json_schema()  # type: ignore[attr-defined]
        self.spec = TaskSpec(self.id, self.queue, self.retry, self.max_duration, schema)
        self.schedule = _declared_schedule(self.id, cron, timezone, cron_missed)

    def __repr__(self) -> str:
        return f"<Task {self.id!r} queue={self.queue.name!r}>"

    # -- payloads -----------------------------------------------------------------------------
    def validate(self, payload: Any) -> Any:
        """Check a payload at trigger time; returns the JSON value to store."""
        if self.payload_model is None:
            return payload
        try:
            model = self.payload_model.model_validate(payload)  # type: ignore[attr-defined]
        except Exception as exc:
            listed = getattr(exc, "errors", None)  # a Pydantic ValidationError's problems
            errors: list[Any] = listed() if callable(listed) else []
            if not errors:
                raise invalid_payload(self.id, "", str(exc), 0) from None
            first = errors[0]
            raise invalid_payload(self.id, location(first["loc"]), first["msg"],
                                  len(errors) - 1) from None
        return model.model_dump(mode="json")

    def parse(self, payload: Any) -> Any:
        """The value handed to the function: the payload model when there is one."""
        if self.payload_model is None:
            return payload
        return self.payload_model.model_validate(payload)  # type: ignore[attr-defined]

    # -- registry -----------------------------------------------------------------------------
    def record(self, now: float) -> TaskRecord:
        return self.spec.to_record(self.code_version, now)

    def queue_record(self) -> QueueRecord:
        return queue_record(self.queue)

    # -- triggering ---------------------------------------------------------------------------
    def trigger(self, payload: T = None, **options: Any) -> RunHandle[R]:  # type: ignore[assignment]
        """Store a new run and return its handle. Options: idempotency_key,
        idempotency_key_ttl, delay, ttl, tags, metadata, concurrency_key, priority,
        max_attempts, queue, debounce."""
        return self.app._trigger(self, payload, options)

    async def trigger_async(self, payload: T = None, **options: Any) -> RunHandle[R]:  # type: ignore[assignment]
        """`trigger` for async code: the database write runs in a thread, not on your loop."""
        return await asyncio.to_thread(self.trigger, payload, **options)

    def batch_trigger(self, items: Iterable[T | BatchItem],
                      **options: Any) -> list[RunHandle[R]]:
        """Trigger many runs in one transaction. Each item is a payload, or a
        `BatchItem(payload, **options)` whose options override the shared ones."""
        return self.app._batch_trigger(self, list(items), options)

    async def batch_trigger_async(self, items: Iterable[T | BatchItem],
                                  **options: Any) -> list[RunHandle[R]]:
        """`batch_trigger` for async code: the database write runs in a thread."""
        return await asyncio.to_thread(self.batch_trigger, items, **options)
