"""The PostgreSQL store's base: its attributes, running work on a pooled connection (the
schema migrated first), applying migrations under an advisory lock, and the helpers every group
of statements shares (NOTIFY channels, a step's parameters)."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tether.clock import Clock
from tether.storage.pipeline import StepPipeline
from tether.storage.postgres.bus import channel
from tether.storage.postgres.connection import Connections
from tether.storage.records import (
    Lease,
    StepRecord,
)
from tether.storage.sql import load_queries, migration_files
from tether.wakeup import Bus

Q = load_queries("tether.storage.postgres", "queries.sql")
Conn = psycopg.Connection[Any]
MIGRATION_LOCK = 0x7E7E_0001


class PgAccess:
    """What every part of PostgresStorage shares (the store's __init__ sets the attributes)."""

    url: str
    db: Connections
    bus: Bus
    pipeline: StepPipeline | None
    io_bound: bool
    clock: Clock | None
    _ready: bool

    def _run(self, work: Any, generic: bool = False) -> Any:
        if not self._ready:
            self.migrate()
        return self.db.run(work, generic=generic)

    def _tx(self, work: Any) -> Any:
        if not self._ready:
            self.migrate()
        return self.db.transaction(work)

    def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return self._run(lambda c: c.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return self._run(lambda c: c.execute(sql, params).fetchone())  # type: ignore[no-any-return]

    def migrate(self) -> list[str]:
        def apply(conn: Conn) -> list[str]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS tether_migrations "
                         "(name text PRIMARY KEY, applied_at double precision NOT NULL)")
            done = {r["name"] for r in conn.execute("SELECT name FROM tether_migrations")}
            applied = []
            for name, script in migration_files("tether.storage.postgres.migrations"):
                if name not in done:
                    conn.execute(script, prepare=False)  # several statements: simple protocol
                    conn.execute("INSERT INTO tether_migrations VALUES (%s, %s)", (name, time.time()))
                    applied.append(name)
            return applied

        applied: list[str] = self.db.transaction(apply)
        self._ready = True
        return applied

    def pending_migrations(self) -> list[str]:
        def read(conn: Conn) -> set[str]:
            found = conn.execute("SELECT to_regclass('tether_migrations') AS t").fetchone()
            if found is None or found["t"] is None:
                return set()  # a new schema
            return {r["name"] for r in conn.execute("SELECT name FROM tether_migrations")}

        done: set[str] = self.db.run(read)
        return [name for name, _ in migration_files("tether.storage.postgres.migrations")
                if name not in done]

    def _step_params(self, lease: Lease, step: StepRecord) -> dict[str, Any]:
        return {**step.__dict__, "run_id": lease.run_id, "token": lease.token}

    def _notify(self, conn: Conn, messages: list[tuple[str, str]]) -> None:
        """NOTIFYs inside the caller's transaction: delivered when it commits."""
        for group, message in dict.fromkeys(messages):
            conn.execute(Q["notify"], (self._channel(group), message))

    def _channel(self, group: str) -> str:
        return channel(self.db.schema, group)
