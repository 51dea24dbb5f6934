"""Creating runs: validating trigger options and building the rows to store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.clock import new_id
from tether.durations import Duration, seconds, until
from tether.errors import ConfigurationError
from tether.limits import DEFAULT_MAX_SIZE
from tether.models import RunStatus
from tether.objects.references import Objects
from tether.options import TOTAL_KEY, BatchItem, Debounce
from tether.serialization import dumps_input, safe_text
from tether.storage.records import NewRun

DEFAULT_IDEMPOTENCY_TTL = 30 * 86400.0
MAX_TAGS = 10


@dataclass
class TriggerOptions:
    idempotency_key: str | None = None
    idempotency_key_ttl: Duration | None = None
    delay: Duration | datetime | None = None
    ttl: Duration | None = None
    tags: list[str] | str = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    concurrency_key: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    queue: str | None = None
    debounce: Debounce | None = None
    parent_id: str | None = None
    root_id: str | None = None
    depth: int = 0

    @classmethod
    def parse(cls, options: dict[str, Any]) -> TriggerOptions:
        if not options:
            return cls()
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(sorted(cls.__dataclass_fields__))
            raise ConfigurationError(f"unknown trigger option(s) {sorted(unknown)}; known: {known}")
        return cls(**options)

    def tag_list(self) -> list[str]:
        return tag_list(self.tags)


def storable_text(value: str) -> bool:
    """Whether both backends store `value` as text: no NUL (PostgreSQL refuses it) and no lone
    surrogate (it is not UTF-8)."""
    return "\x00" not in value and safe_text(value) == value


def tag_list(tags: str | list[str] | None) -> list[str]:
    """Validated tags (of a run or a token), sorted, without duplicates."""
    items = [tags] if isinstance(tags, str) else list(tags or [])
    if len(items) > MAX_TAGS:
        raise ConfigurationError(f"at most {MAX_TAGS} tags are allowed, got {len(items)}")
    for tag in items:
        if not isinstance(tag, str) or not 0 < len(tag) <= 128 or not storable_text(tag):
            raise ConfigurationError(f"tags must be strings of 1 to 128 characters, without NUL "
                                     f"characters or lone surrogates: {tag!r}")
    return sorted(set(items))


def batch_items(items: list[Any], shared: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(payload, options) per batch item: the shared options, overridden by a BatchItem's own."""
    out = []
    for item in items:
        if isinstance(item, BatchItem):
            out.append((item.payload, {**shared, **item.options}))
        else:
            out.append((item, dict(shared)))
    return out


def _check(options: TriggerOptions) -> None:
    if not isinstance(options.priority, int):
        raise ConfigurationError(f"priority must be an integer, got {options.priority!r}")
    if options.max_attempts is not None and options.max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be >= 1, got {options.max_attempts}")
    if not isinstance(options.metadata, dict):
        raise ConfigurationError("metadata must be a dict")
    if options.debounce is not None and not isinstance(options.debounce, Debounce):
        raise ConfigurationError(f"debounce must be a tether.Debounce, got {options.debounce!r}")
    for name in ("idempotency_key", "concurrency_key", "queue"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not value
                                  or not storable_text(value)):
            raise ConfigurationError(f"{name} must be a non-empty string without NUL characters "
                                     f"or lone surrogates, got {value!r}")
    if options.concurrency_key == TOTAL_KEY:
        raise ConfigurationError("concurrency_key '\\x1e' is reserved (queue-wide places)")


def _metadata_json(metadata: dict[str, Any], max_size: int | None,
                   objects: Objects | None = None, owner: str = "") -> str:
    if not metadata and (max_size is None or max_size >= 2):
        return "{}"  # the usual case, without encoding and checking it
    return dumps_input(metadata, "metadata", max_size, objects, owner)


def build_run(spec: Any, payload: Any, options: TriggerOptions, now: float,
              max_size: int | None = DEFAULT_MAX_SIZE, objects: Objects | None = None) -> NewRun:
    """A row for a new run of the task described by `spec` (a `TaskSpec`). The payload and the
    metadata each take at most `max_size` bytes of JSON (the app's max_payload_size)."""
    _check(options)
    available_at = now if options.delay is None else until(options.delay, now, "delay")
    debounce = options.debounce
    if debounce is not None:
        available_at = now + seconds(debounce.delay, "Debounce delay")
    idem_ttl = (DEFAULT_IDEMPOTENCY_TTL if options.idempotency_key_ttl is None
                else seconds(options.idempotency_key_ttl, "idempotency_key_ttl"))
    run_id = new_id("run")
    queue = options.queue or spec.queue.name
    rate = spec.queue.rate_limit
    # a run keeps its task's queue's rate key (computed from the payload as validated); a run
    # sent to another queue has none: that queue's own limit keys it by its concurrency key
    rate_key = rate.key_of(spec.id, payload) if rate is not None and queue == spec.queue.name \
        else None
    return NewRun(
        id=run_id,
        task_id=spec.id,
        queue=queue,
        status=RunStatus.DELAYED if available_at > now else RunStatus.QUEUED,
        payload=dumps_input(payload, "payload", max_size, objects, run_id),
        metadata=_metadata_json(options.metadata, max_size, objects, run_id),
        tags=options.tag_list(),
        idempotency_key=options.idempotency_key,
        idempotency_expires_at=now + idem_ttl if options.idempotency_key else None,
        concurrency_key=options.concurrency_key or "",
        priority=options.priority,
        max_attempts=options.max_attempts or spec.retry.max_attempts,
        retry=spec.retry_json,
        max_duration=spec.max_duration,
        available_at=available_at,
        expires_at=None if options.ttl is None else available_at + seconds(options.ttl, "ttl"),
        parent_id=options.parent_id,
        root_id=options.root_id or options.parent_id,
        depth=options.depth,
        debounce_key=debounce.key if debounce else None,
        debounce_trailing=debounce is None or debounce.mode == "trailing",
        debounce_max=(None if debounce is None or debounce.max_delay is None
                      else seconds(debounce.max_delay, "Debounce max_delay")),
        rate_key=rate_key,
    )


def build_runs(spec: Any, validate: Callable[[Any], Any], items: list[tuple[Any, dict[str, Any]]],
               now: float, max_size: int | None = DEFAULT_MAX_SIZE,
               objects: Objects | None = None) -> list[NewRun]:
    """Validate every payload and option before anything is stored; large values are written to
    the object store (`objects`) after every payload was validated, before any row."""
    parsed = [(validate(payload), TriggerOptions.parse(opts)) for payload, opts in items]
    return [build_run(spec, payload, options, now, max_size, objects) for payload, options in parsed]

