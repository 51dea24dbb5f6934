"""The HTTP API's JSON and Tether's Python values, both ways, for `tether.Client`: trigger options
in Python names -> the API's camelCase; run and token objects -> `Run` and `Token`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tether.durations import Duration, duration_text, seconds
from tether.errors import ConfigurationError
from tether.models import Run, RunStatus, Token, TokenStatus
from tether.serialization import dumps_input

# The API's statuses that Tether does not have, as the nearest Tether status.
STATUS_ALIASES = {"CRASHED": RunStatus.FAILED, "SYSTEM_FAILURE": RunStatus.FAILED,
                  "DEQUEUED": RunStatus.EXECUTING, "PENDING_VERSION": RunStatus.QUEUED}


def _duration(value: Duration, what: str) -> str:
    """A duration as the API's text ("30s", "5m"), checked as app.trigger checks it."""
    amount = seconds(value, what)  # before anything is sent
    return value.strip() if isinstance(value, str) else duration_text(amount)


def when_text(value: Duration | datetime, what: str) -> str:
    """A delay: a duration as text, or a point in time as an ISO-8601 string."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{what} datetime must be timezone-aware, got {value!r}")
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return when_text(parsed, what)
    return _duration(value, what)


def _tags(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# Python option name -> (API name, conversion).
OPTIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "idempotency_key": ("idempotencyKey", str),
    "idempotency_key_ttl": ("idempotencyKeyTTL", lambda v: _duration(v, "idempotency_key_ttl")),
    "delay": ("delay", lambda v: when_text(v, "delay")),
    "ttl": ("ttl", lambda v: _duration(v, "ttl")),
    "tags": ("tags", _tags),
    "metadata": ("metadata", lambda v: json_payload(v, "metadata")),
    "concurrency_key": ("concurrencyKey", str),
    "priority": ("priority", lambda v: v),
    "max_attempts": ("maxAttempts", lambda v: v),
    "queue": ("queue", lambda v: {"name": v}),
}


def trigger_options(options: dict[str, Any]) -> dict[str, Any]:
    """`app.trigger`'s keyword options as the API's `options` object (None values left out)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown trigger option(s) {sorted(unknown)} for tether.Client; "
            f"known: {', '.join(sorted(OPTIONS))}")
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is not None:
            api_name, convert = OPTIONS[name]
            out[api_name] = convert(value)
    return out


def json_payload(payload: Any, what: str = "payload") -> Any:
    """The payload (or metadata, token data) as plain JSON values (Pydantic models dumped);
    PayloadNotStorable, before anything is sent, if it is not JSON that Tether stores. Its size
    is the server's to judge (PayloadTooLarge, from a 413)."""
    return json.loads(dumps_input(payload, what, None))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


def run_status(value: str) -> RunStatus:
    return STATUS_ALIASES.get(value) or RunStatus(value)


def _error(value: Any) -> dict[str, Any] | None:
    """The API's `{message, name, stackTrace}` as Tether's `{message, type, traceback}`."""
    if not isinstance(value, dict):
        return None
    error: dict[str, Any] = {"message": value.get("message", "")}
    if value.get("name"):
        error["type"] = value["name"]
    if value.get("stackTrace"):
        error["traceback"] = value["stackTrace"]
    return error


def _related_id(data: dict[str, Any], which: str) -> str | None:
    related = (data.get("relatedRuns") or {}).get(which)
    return related.get("id") if isinstance(related, dict) else None


def _queue_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or "")
    return value if isinstance(value, str) else ""


def run_from_json(data: dict[str, Any]) -> Run:
    """A `Run` from the API's run object (or list item: no payload, output or related runs)."""
    delayed_until = parse_time(data.get("delayedUntil"))
    return Run(
        id=data["id"], task_id=data["taskIdentifier"], status=run_status(data["status"]),
        payload=data.get("payload"), output=data.get("output"), error=_error(data.get("error")),
        attempts=int(data.get("attemptCount") or 0), tags=list(data.get("tags") or []),
        metadata=dict(data.get("metadata") or {}), idempotency_key=data.get("idempotencyKey"),
        parent_id=_related_id(data, "parent"), root_id=_related_id(data, "root"),
        created_at=parse_time(data["createdAt"]) or datetime.fromtimestamp(0),
        started_at=parse_time(data.get("startedAt")),
        finished_at=parse_time(data.get("finishedAt")),
        queue=_queue_name(data.get("queue")), concurrency_key=data.get("concurrencyKey"),
        priority=int(data.get("priority") or 0), max_attempts=int(data.get("maxAttempts") or 1),
        available_at=delayed_until, updated_at=parse_time(data.get("updatedAt")))


def _token_output(data: dict[str, Any]) -> Any:
    """A token's data: the API sends it as text with its type beside it (the SDK's shape)."""
    output = data.get("output")
    if not isinstance(output, str) or not output:
        return output or None
    kind = data.get("outputType") or "application/json"
    if kind == "application/json":
        return json.loads(output)
    if kind == "application/super+json":
        return json.loads(output).get("json")
    return output


def token_from_json(data: dict[str, Any]) -> Token:
    return Token(
        id=data["id"], status=TokenStatus(data["status"]), output=_token_output(data),
        timeout_at=parse_time(data.get("timeoutAt")),
        created_at=parse_time(data["createdAt"]) or datetime.fromtimestamp(0),
        completed_at=parse_time(data.get("completedAt")), run_id=data.get("runId"),
        idempotency_key=data.get("idempotencyKey"), tags=list(data.get("tags") or []))
