"""The optional body of `POST /api/v1/runs/{id}/replay` (Trigger.dev SDK 4.8+): a new payload or
options for the new run. Fields left out keep the original run's values. `machine`, `region` and
`version` are accepted and ignored, as on triggers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tether.app import Tether
from tether.server.api.payloads import decode_payload
from tether.server.api.trigger_body import Key, QueueOption, Tags, TriggerOptionsBody, trigger_options


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payload: Any = None
    payloadType: str | None = None
    metadata: dict[str, Any] | None = None
    tags: Tags | None = None
    queue: Key | None = None
    concurrencyKey: Key | None = None
    delay: str | None = None
    ttl: str | float | None = None
    idempotencyKey: Key | None = None
    idempotencyKeyTTL: str | float | None = None
    maxAttempts: int | None = Field(default=None, ge=1)
    priority: float | None = None


def replay_overrides(tether: Tether, body: ReplayBody) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(the new payload as a 0- or 1-tuple of positional arguments, the option overrides)."""
    fields = body.model_dump(exclude_unset=True, exclude={"payload", "payloadType", "queue"})
    options = TriggerOptionsBody(**fields,
                                 queue=QueueOption(name=body.queue) if body.queue else None)
    payload = (decode_payload(tether, body.payload, body.payloadType),) \
        if "payload" in body.model_fields_set else ()
    return payload, trigger_options(options)
