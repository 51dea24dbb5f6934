"""The HTTP server's records in SQLite (API keys, settings, batches, replies, packets, and the
run edits the API makes): the statements behind the store's server methods. Each function takes
the store's connections and runs its own reads or write transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from tether.errors import ConfigurationError
from tether.storage.queue_records import QueueDepth
from tether.storage.records import NewRun, RunRecord
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply
from tether.storage.server_rules import ambiguous_name, batch_results, fresh_items, merged_tags
from tether.storage.sql import load_queries
from tether.storage.sqlite.connection import Connections

S = load_queries("tether.storage.sqlite", "server.sql")
CreateAll = Callable[[sqlite3.Connection, list[NewRun], float], list[tuple[RunRecord, bool]]]


# -- API keys and settings --------------------------------------------------------------------
def create_api_key(db: Connections, key: ApiKeyRecord) -> None:
    with db.write() as conn:
        conn.execute(S["insert_api_key"], key.__dict__)


def find_api_key(db: Connections, key_hash: str) -> ApiKeyRecord | None:
    row = db.read(S["find_api_key"], (key_hash,)).fetchone()
    return None if row is None else ApiKeyRecord(**dict(row))


def list_api_keys(db: Connections) -> list[ApiKeyRecord]:
    return [ApiKeyRecord(**dict(r)) for r in db.read(S["list_api_keys"])]


def revoke_api_key(db: Connections, key: str, now: float) -> ApiKeyRecord | None:
    """By id; else the one active key with this name (or, none active, the last one revoked)."""
    with db.write() as conn:
        row = conn.execute(S["revoke_api_key"], {"id": key, "now": now}).fetchone()
        if row is None:
            named = [ApiKeyRecord(**dict(r)) for r in conn.execute(S["api_keys_named"], (key,))]
            if not named:
                return None
            ambiguous_name(key, named)
            row = conn.execute(S["revoke_api_key"], {"id": named[0].id, "now": now}).fetchone()
    return ApiKeyRecord(**dict(row))


def touch_api_key(db: Connections, key_id: str, now: float) -> None:
    with db.write() as conn:
        conn.execute(S["touch_api_key"], (now, key_id))


def ensure_setting(db: Connections, name: str, value: str) -> str:
    with db.write() as conn:
        conn.execute(S["insert_setting"], (name, value))
        stored: str = conn.execute(S["get_setting"], (name,)).fetchone()[0]
    return stored


# -- batches ----------------------------------------------------------------------------------
def create_batch(db: Connections, batch: BatchRecord) -> tuple[BatchRecord, bool]:
    params = {k: v for k, v in batch.__dict__.items() if k != "items_accepted"}
    with db.write() as conn:
        if conn.execute(S["insert_batch"], params).rowcount == 1:
            return batch, True
        row = conn.execute(S["find_batch"], (batch.idempotency_key,)).fetchone()
    if row is None:  # the same id stored twice: only a retried call does that
        found = get_batch(db, batch.id)
        assert found is not None
        return found, False
    return BatchRecord(**dict(row)), False


def get_batch(db: Connections, batch_id: str) -> BatchRecord | None:
    row = db.read(S["get_batch"], (batch_id,)).fetchone()
    return None if row is None else BatchRecord(**dict(row))


def add_batch_runs(db: Connections, create_all: CreateAll, batch_id: str,
                   items: list[tuple[int, NewRun]], now: float
                   ) -> list[tuple[int, RunRecord, bool]]:
    """In one write transaction: the runs of indexes that have none yet are created with the
    store's own `create_all` (idempotency keys, debounce, tags), then attached by index."""
    with db.write() as conn:
        if conn.execute(S["touch_batch"], (now, batch_id)).rowcount != 1:
            raise ConfigurationError(f"no batch with id {batch_id!r}")
        indexes = json.dumps([idx for idx, _ in items])
        known = {r["idx"]: (RunRecord.from_mapping(r), False)
                 for r in conn.execute(S["batch_items_at"], (batch_id, indexes))}
        fresh = fresh_items(items, known)
        made = create_all(conn, [new for _, new in fresh], now)
        conn.executemany(S["insert_batch_item"], [
            (batch_id, idx, record.id) for (idx, _), (record, _) in zip(fresh, made, strict=True)])
    known.update((idx, result) for (idx, _), result in zip(fresh, made, strict=True))
    return batch_results(items, known)


def batch_run_ids(db: Connections, batch_id: str) -> list[str]:
    return [r[0] for r in db.read(S["batch_run_ids"], (batch_id,))]


def batch_of(db: Connections, run_id: str) -> str | None:
    row = db.read(S["batch_of"], (run_id,)).fetchone()
    return None if row is None else str(row[0])


# -- replies and packets ----------------------------------------------------------------------
def get_reply(db: Connections, key: str) -> StoredReply | None:
    row = db.read(S["get_reply"], (key,)).fetchone()
    return None if row is None else StoredReply(**dict(row))


def save_reply(db: Connections, reply: StoredReply) -> StoredReply:
    with db.write() as conn:
        conn.execute(S["insert_reply"], reply.__dict__)
        row = conn.execute(S["get_reply"], (reply.key,)).fetchone()
    return StoredReply(**dict(row))


def prune_replies(db: Connections, before: float) -> int:
    with db.write() as conn:
        return conn.execute(S["prune_replies"], (before,)).rowcount


def put_packet(db: Connections, path: str, data: bytes, now: float) -> None:
    with db.write() as conn:
        conn.execute(S["put_packet"], (path, data, now))


def get_packet(db: Connections, path: str) -> bytes | None:
    row = db.read(S["get_packet"], (path,)).fetchone()
    return None if row is None else bytes(row[0])


# -- run edits --------------------------------------------------------------------------------
def add_tags(db: Connections, insert_tag: str, run_id: str, tags: list[str],
             now: float) -> RunRecord | None:
    """`insert_tag` is the store's statement that keeps run_tags in step with runs.tags."""
    with db.write() as conn:
        row = conn.execute(S["run_tags"], (run_id,)).fetchone()
        if row is None:
            return None
        merged = merged_tags(json.loads(row[0]), tags)
        updated = conn.execute(S["set_tags"], (json.dumps(merged), now, run_id)).fetchone()
        conn.executemany(insert_tag, [(tag, run_id) for tag in merged])
    return RunRecord.from_mapping(updated)


def set_metadata(db: Connections, run_id: str, metadata: str, now: float) -> RunRecord | None:
    with db.write() as conn:
        row = conn.execute(S["set_metadata"], (metadata, now, run_id)).fetchone()
    return None if row is None else RunRecord.from_mapping(row)


def queue_stats(db: Connections) -> dict[str, tuple[int, int]]:
    return {r[0]: (r[1], r[2]) for r in db.read(S["queue_stats"])}


def queue_depths(db: Connections) -> list[QueueDepth]:
    return [QueueDepth(r[0], r[1], r[2], r[3]) for r in db.read(S["queue_depths"])]
