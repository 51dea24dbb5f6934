"""The HTTP server's records in PostgreSQL (API keys, settings, batches, replies, packets, and the
run edits the API makes): the statements behind the store's server methods. Each function takes
the store's connections and runs one statement, or a transaction where it matters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tether.errors import ConfigurationError
from tether.storage.postgres.connection import Connections
from tether.storage.queue_records import QueueDepth
from tether.storage.records import NewRun, RunRecord
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply
from tether.storage.server_rules import ambiguous_name, batch_results, fresh_items, merged_tags
from tether.storage.sql import load_queries

S = load_queries("tether.storage.postgres", "server.sql")
Conn = psycopg.Connection[Any]
CreateAll = Callable[[Conn, list[NewRun], float], list[tuple[RunRecord, bool]]]


def _one(db: Connections, sql: str, params: Any) -> dict[str, Any] | None:
    row: dict[str, Any] | None = db.run(lambda c: c.execute(sql, params).fetchone())
    return row


def _all(db: Connections, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = db.run(lambda c: c.execute(sql, params).fetchall())
    return rows


def _count(db: Connections, sql: str, params: Any) -> int:
    return db.run(lambda c: c.execute(sql, params).rowcount)


# -- API keys and settings --------------------------------------------------------------------
def create_api_key(db: Connections, key: ApiKeyRecord) -> None:
    _count(db, S["insert_api_key"], key.__dict__)


def find_api_key(db: Connections, key_hash: str) -> ApiKeyRecord | None:
    row = _one(db, S["find_api_key"], (key_hash,))
    return None if row is None else ApiKeyRecord(**row)


def list_api_keys(db: Connections) -> list[ApiKeyRecord]:
    return [ApiKeyRecord(**r) for r in _all(db, S["list_api_keys"])]


def revoke_api_key(db: Connections, key: str, now: float) -> ApiKeyRecord | None:
    """By id; else the one active key with this name (or, none active, the last one revoked)."""
    def work(conn: Conn) -> ApiKeyRecord | None:
        row = conn.execute(S["revoke_api_key"], {"id": key, "now": now}).fetchone()
        if row is None:
            named = [ApiKeyRecord(**r) for r in conn.execute(S["api_keys_named"], (key,))]
            if not named:
                return None
            ambiguous_name(key, named)
            row = conn.execute(S["revoke_api_key"], {"id": named[0].id, "now": now}).fetchone()
            assert row is not None  # found under the same row locks
        return ApiKeyRecord(**row)

    return db.transaction(work)


def touch_api_key(db: Connections, key_id: str, now: float) -> None:
    _count(db, S["touch_api_key"], (now, key_id))


def ensure_setting(db: Connections, name: str, value: str) -> str:
    """Two statements: the SELECT's snapshot is taken after a racing INSERT has committed (an
    INSERT that conflicts with an uncommitted row waits for it)."""
    def work(conn: Conn) -> str:
        conn.execute(S["insert_setting"], (name, value))
        row = conn.execute(S["get_setting"], (name,)).fetchone()
        assert row is not None
        return str(row["value"])

    return db.run(work)


# -- batches ----------------------------------------------------------------------------------
def create_batch(db: Connections, batch: BatchRecord) -> tuple[BatchRecord, bool]:
    params = {k: v for k, v in batch.__dict__.items() if k != "items_accepted"}
    if _count(db, S["insert_batch"], params) == 1:
        return batch, True
    row = None
    if batch.idempotency_key is not None:
        row = _one(db, S["find_batch"], (batch.idempotency_key,))
    if row is None:  # the same id stored twice: only a retried call does that
        row = _one(db, S["get_batch"], (batch.id,))
        assert row is not None
    return BatchRecord(**row), False


def get_batch(db: Connections, batch_id: str) -> BatchRecord | None:
    row = _one(db, S["get_batch"], (batch_id,))
    return None if row is None else BatchRecord(**row)


def add_batch_runs(db: Connections, create_all: CreateAll, batch_id: str,
                   items: list[tuple[int, NewRun]], now: float
                   ) -> list[tuple[int, RunRecord, bool]]:
    """In one transaction, holding the batch's row lock: the runs of indexes that have none yet
    are created with the store's own `create_all` (idempotency keys, debounce, tags, wake-up
    at commit), then attached by index."""
    def work(conn: Conn) -> dict[int, tuple[RunRecord, bool]]:
        if conn.execute(S["touch_batch"], (now, batch_id)).rowcount != 1:
            raise ConfigurationError(f"no batch with id {batch_id!r}")
        rows = conn.execute(S["batch_items_at"], (batch_id, [idx for idx, _ in items]))
        known = {r["idx"]: (RunRecord.from_mapping(r), False) for r in rows}
        fresh = fresh_items(items, known)
        made = create_all(conn, [new for _, new in fresh], now)
        conn.cursor().executemany(S["insert_batch_item"], [
            (batch_id, idx, record.id) for (idx, _), (record, _) in zip(fresh, made, strict=True)])
        known.update((idx, result) for (idx, _), result in zip(fresh, made, strict=True))
        return known

    return batch_results(items, db.transaction(work))


def batch_run_ids(db: Connections, batch_id: str) -> list[str]:
    return [r["run_id"] for r in _all(db, S["batch_run_ids"], (batch_id,))]


def batch_of(db: Connections, run_id: str) -> str | None:
    row = _one(db, S["batch_of"], (run_id,))
    return None if row is None else str(row["batch_id"])


# -- replies and packets ----------------------------------------------------------------------
def get_reply(db: Connections, key: str) -> StoredReply | None:
    row = _one(db, S["get_reply"], (key,))
    return None if row is None else StoredReply(**row)


def save_reply(db: Connections, reply: StoredReply) -> StoredReply:
    _count(db, S["insert_reply"], reply.__dict__)
    stored = get_reply(db, reply.key)
    assert stored is not None  # inserted now or earlier; pruning takes hours
    return stored


def prune_replies(db: Connections, before: float) -> int:
    return _count(db, S["prune_replies"], (before,))


def put_packet(db: Connections, path: str, data: bytes, now: float) -> None:
    _count(db, S["put_packet"], (path, data, now))


def get_packet(db: Connections, path: str) -> bytes | None:
    row = _one(db, S["get_packet"], (path,))
    return None if row is None else bytes(row["data"])


# -- run edits --------------------------------------------------------------------------------
def add_tags(db: Connections, insert_tag: str, run_id: str, tags: list[str],
             now: float) -> RunRecord | None:
    """`insert_tag` is the store's statement that keeps run_tags in step with runs.tags."""
    def work(conn: Conn) -> RunRecord | None:
        row = conn.execute(S["run_tags"], (run_id,)).fetchone()  # locks the run's row
        if row is None:
            return None
        merged = merged_tags(json.loads(row["tags"]), tags)
        updated = conn.execute(S["set_tags"], (json.dumps(merged), now, run_id)).fetchone()
        conn.cursor().executemany(insert_tag, [(tag, run_id) for tag in merged])
        return RunRecord.from_mapping(updated)

    return db.transaction(work)


def set_metadata(db: Connections, run_id: str, metadata: str, now: float) -> RunRecord | None:
    row = _one(db, S["set_metadata"], (metadata, now, run_id))
    return None if row is None else RunRecord.from_mapping(row)


def queue_stats(db: Connections) -> dict[str, tuple[int, int]]:
    return {r["queue"]: (r["waiting"], r["executing"]) for r in _all(db, S["queue_stats"])}


def queue_depths(db: Connections) -> list[QueueDepth]:
    return [QueueDepth(r["queue"], r["status"], r["n"], r["oldest"])
            for r in _all(db, S["queue_depths"])]
