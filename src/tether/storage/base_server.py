"""The part of the storage interface (storage/base.py's Storage) that the HTTP server and its
alerts use: API keys, stored batches and replies, packets, failure hooks owed after a crash,
alert state. Split from base.py so that neither file passes the size budget; Storage extends it."""

from __future__ import annotations

from typing import Protocol

from tether.storage.queue_records import QueueDepth
from tether.storage.records import NewRun, RunRecord
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply


class ServerStorage(Protocol):
    # -- the HTTP server (storage/server.py has the records) ----------------------------------
    def create_api_key(self, key: ApiKeyRecord) -> None: ...

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, unless revoked."""
        ...

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    def revoke_api_key(self, key_id: str, now: float) -> ApiKeyRecord | None:
        """Revoke the key with this id or name; returns it (None if unknown). Revoking twice
        keeps the first time."""
        ...

    def touch_api_key(self, key_id: str, now: float) -> None:
        """Record that the key was just used (callers do this at most about once a minute)."""
        ...

    def ensure_setting(self, name: str, value: str) -> str:
        """Store `value` under `name` unless a value is there already; return the stored one.
        Processes that race agree on one value (the server's signing secret)."""
        ...

    def create_batch(self, batch: BatchRecord) -> tuple[BatchRecord, bool]:
        """Store a batch, or return the one with the same idempotency key, and False."""
        ...

    def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    def add_batch_runs(self, batch_id: str, items: list[tuple[int, NewRun]],
                       now: float) -> list[tuple[int, RunRecord, bool]]:
        """Store the runs of a batch's items, in one transaction. An index that already has a
        run keeps it (returned with False, nothing created); a run whose idempotency key is
        live returns the existing run, also with False. Returns (index, run, created) in the
        order given; the batch's items_accepted counts distinct indexes."""
        ...

    def batch_run_ids(self, batch_id: str) -> list[str]:
        """The run ids of a batch, by index."""
        ...

    def batch_of(self, run_id: str) -> str | None:
        """The id of the batch a run was created in, if any."""
        ...

    def get_reply(self, key: str) -> StoredReply | None: ...

    def save_reply(self, reply: StoredReply) -> StoredReply:
        """Keep the first reply stored under its key; return the stored one."""
        ...

    def prune_replies(self, before: float) -> int:
        """Forget replies older than `before`; returns how many."""
        ...

    def put_packet(self, path: str, data: bytes, now: float) -> None:
        """Store (or replace) an uploaded payload packet."""
        ...

    def get_packet(self, path: str) -> bytes | None: ...

    def add_tags(self, run_id: str, tags: list[str], now: float) -> RunRecord | None:
        """Add tags to a run (keeping existing ones, no duplicates, sorted); None if unknown."""
        ...

    def set_metadata(self, run_id: str, metadata: str, now: float) -> RunRecord | None:
        """Replace a run's metadata (JSON text); None if unknown."""
        ...

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        """Per queue name: (runs QUEUED or DELAYED, runs EXECUTING)."""
        ...

    def queue_depths(self) -> list[QueueDepth]:
        """Per queue and unfinished status (QUEUED, DELAYED, EXECUTING, WAITING): how many runs,
        sorted by queue then status; statuses without runs are left out. Read through indexes
        that hold only unfinished runs, so its cost never grows with the finished ones."""
        ...

    # -- failure hooks owed after a crash, and the server's alerts ----------------------------
    def take_owed_hooks(self, task_ids: list[str], holder: str, now: float, hold: float,
                        limit: int = 20) -> list[str]:
        """Take up to `limit` failure hooks owed (a run's last attempt crashed) for these tasks,
        each for `hold` seconds (nobody else takes it meanwhile); returns their run ids."""
        ...

    def settle_owed_hook(self, run_id: str, holder: str) -> None:
        """The hook ran: forget it (only if `holder` still holds it)."""
        ...

    def owed_hooks(self) -> list[str]:
        """The run ids whose failure hook is still owed, oldest first."""
        ...

    def get_setting(self, name: str) -> str | None: ...

    def put_setting(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing what was there."""
        ...

    def failures_since(self, after: float, after_id: str = "",
                       limit: int = 200) -> list[tuple[float, str]]:
        """(finished_at, id) of runs FAILED or TIMED_OUT after (`after`, `after_id`), in that
        order."""
        ...

    def oldest_ready(self, now: float) -> dict[str, float]:
        """Per queue with QUEUED runs ready by `now`: the oldest one's available_at."""
        ...
