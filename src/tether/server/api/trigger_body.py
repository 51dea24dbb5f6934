"""The request bodies of the trigger routes, and how their options become Tether's.

Options of `POST /api/v1/tasks/{task}/trigger` (and of every batch item):
- applied: `queue.name` (the run's queue), `concurrencyKey`, `delay` ("1h", or an ISO-8601 date;
  one without an offset is UTC), `ttl` ("10m" or seconds), `idempotencyKey` with
  `idempotencyKeyTTL` and `idempotencyKeyOptions`, `maxAttempts`, `metadata` (an object; with
  `metadataType: application/super+json` a superjson string), `tags` (a string or a list),
  `payloadType`, `debounce` (`{key, delay, mode?, maxDelay?}`, Tether's Debounce). Durations
  may be compound, as Trigger.dev writes them: "1h30m" (tether.durations reads them).
- `priority`: Trigger.dev's is seconds of head start in the queue; Tether's is an integer where
  higher is claimed first. The number of seconds is passed through as that integer (rounded), so
  larger values still go first, but it is an order, not a time offset.
- `maxDuration` (seconds): applied to this run, in place of the task's own `max_duration`.
- `parentRunId`: the new run is recorded as a child of that run (its root, depth and related
  runs; canceling the parent cancels it), without making the parent wait for it.
- accepted and ignored: `lockToVersion` (Tether has no deployed versions), `test`, `machine`,
  `region`, `resumeParentOnCompletion`, `context`, `bulkActionId`.

Idempotency: the SDK hashes the caller's key and sends the hash as `idempotencyKey`, with the key
itself in `idempotencyKeyOptions.key`. Tether stores and dedupes on the caller's own key when it is
given (outside a Trigger.dev task, which is where the SDK calls Tether from, the hash depends on
that key alone), so the run object shows the key the caller chose, and `app.trigger(...,
idempotency_key=k)` in Python finds the same run as `tasks.trigger(..., {idempotencyKey: k})`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from tether.errors import ConfigurationError, PayloadError
from tether.options import Debounce
from tether.server.api.payloads import SUPERJSON, from_superjson
from tether.server.deps import ApiKeyDep
from tether.server.errors import ApiError

MAX_BATCH = 1000


def _plain(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Text stored as it is (keys, names, tags): no NUL characters (PostgreSQL refuses them), and
# short enough for an index.
Key = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(_plain)]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# One tag or a list of them; always a list once validated.
Tags = Annotated[list[Key], BeforeValidator(_listed, json_schema_input_type=str | list[str])]


def plain_params(request: Request, key: ApiKeyDep) -> None:
    """A route dependency, after the API key: 422 for a NUL character in the path or query
    (ids and filters are looked up as they are, and PostgreSQL refuses NUL)."""
    values = [*map(str, request.path_params.values()), *request.query_params.values()]
    if any("\x00" in value for value in values):
        raise ApiError(422, "the path and query must not contain NUL characters")


class QueueOption(BaseModel):
    name: Key


class DebounceOption(BaseModel):
    key: Key
    delay: str | float
    mode: str | None = None
    maxDelay: str | float | None = None


class IdempotencyKeyOptions(BaseModel):
    key: Key | None = None
    scope: str | None = None


class TriggerOptionsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    queue: QueueOption | None = None
    concurrencyKey: Key | None = None
    delay: str | None = None
    ttl: str | float | None = None
    idempotencyKey: Key | None = None
    idempotencyKeyTTL: str | float | None = None
    idempotencyKeyOptions: IdempotencyKeyOptions | None = None
    maxAttempts: int | None = Field(default=None, ge=1)
    maxDuration: float | None = Field(default=None, gt=0)
    priority: float | None = None
    metadata: Any = None
    metadataType: str | None = None
    tags: Tags | None = None
    payloadType: str | None = None
    debounce: DebounceOption | None = None
    parentRunId: Key | None = None
    lockToVersion: str | None = None
    test: bool | None = None


class TriggerBody(BaseModel):
    payload: Any = None
    context: Any = None
    options: TriggerOptionsBody | None = None


class BatchItemBody(TriggerBody):
    task: Key


class BatchLine(BatchItemBody):
    """One line of the NDJSON body of `POST /api/v3/batches/{id}/items`."""

    index: int = Field(ge=0)


class BatchV2Body(BaseModel):
    items: list[BatchItemBody] = Field(min_length=1, max_length=MAX_BATCH)
    parentRunId: str | None = None
    resumeParentOnCompletion: bool | None = None


class CreateBatchBody(BaseModel):
    runCount: int = Field(ge=1, le=MAX_BATCH)
    taskIdentifiers: list[Key] | None = None
    idempotencyKey: Key | None = None
    idempotencyKeyTTL: str | None = None  # accepted; a batch's key does not expire in Tether
    parentRunId: str | None = None
    resumeParentOnCompletion: bool | None = None


def when(value: str) -> str | datetime:
    """A delay: a duration text, or an ISO-8601 date (UTC when it has no offset)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def idempotency_key(opts: TriggerOptionsBody) -> str | None:
    if not opts.idempotencyKey:
        return None
    given = opts.idempotencyKeyOptions.key if opts.idempotencyKeyOptions else None
    return given or opts.idempotencyKey


def metadata(opts: TriggerOptionsBody) -> dict[str, Any] | None:
    value = opts.metadata
    if isinstance(value, str):
        kind = (opts.metadataType or "application/json").split(";")[0].strip().lower()
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"options.metadata is not valid JSON: {exc.msg}") from None
        if kind == SUPERJSON:
            value = from_superjson(value)
    if value is not None and not isinstance(value, dict):
        raise ConfigurationError("options.metadata must be a JSON object")
    return value


def _debounce(option: DebounceOption) -> Debounce:
    return Debounce(key=option.key, delay=option.delay, mode=option.mode or "trailing",
                    max_delay=option.maxDelay)


def _one_to_one(opts: TriggerOptionsBody) -> dict[str, Any]:
    """The options that map one to one."""
    plain = {"concurrency_key": opts.concurrencyKey, "ttl": opts.ttl,
             "idempotency_key_ttl": opts.idempotencyKeyTTL, "max_attempts": opts.maxAttempts,
             "tags": opts.tags, "idempotency_key": idempotency_key(opts),
             "metadata": metadata(opts)}
    return {name: value for name, value in plain.items() if value is not None}


def trigger_options(opts: TriggerOptionsBody | None) -> dict[str, Any]:
    """Keyword options for Tether's triggering (`TriggerOptions`) from the SDK's options."""
    if opts is None:
        return {}
    out = _one_to_one(opts)
    if opts.queue is not None:
        out["queue"] = opts.queue.name
    if opts.delay:
        out["delay"] = when(opts.delay)
    if opts.priority is not None:
        out["priority"] = round(opts.priority)
    if opts.debounce is not None:
        out["debounce"] = _debounce(opts.debounce)
    return out

