"""Plain records of what the HTTP server keeps: API keys, batches, cached replies to retried
requests and uploaded payload packets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApiKeyRecord:
    """An API key, stored as the SHA-256 of its secret. `prefix` (the first characters of the
    secret) is shown in listings so a person can tell keys apart."""

    id: str  # "key_..."
    name: str
    prefix: str
    hash: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass
class BatchRecord:
    """A batch of runs triggered together over HTTP. Runs are attached to it by index, so an
    item sent twice (the SDK re-sends the whole stream on retry) creates one run."""

    id: str  # "batch_..."
    run_count: int  # how many items the batch expects
    idempotency_key: str | None
    created_at: float
    updated_at: float
    items_accepted: int = 0  # how many distinct indexes have a run


@dataclass
class StoredReply:
    """The answer given to a POST that carried a request idempotency key, replayed when the
    same key comes again (the SDK reuses it across its own retries)."""

    key: str
    status_code: int
    body: str
    created_at: float
