"""The SQLite store's base: its attributes, reads and write transactions (the schema migrated
first), migrations, and the helpers every group of statements shares (wake-ups sent after
commit, a step's parameters, an attempt's buffered metadata and logs)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tether.clock import Clock
from tether.storage.pipeline import StepPipeline
from tether.storage.records import (
    Flush,
    Lease,
    StepRecord,
)
from tether.storage.sql import load_queries, migration_files
from tether.storage.sqlite.connection import Connections, migrate
from tether.wakeup import Bus

Q = load_queries("tether.storage.sqlite", "queries.sql")


class SQLiteAccess:
    """What every part of SQLiteStorage shares (the store's __init__ sets the attributes)."""

    path: Path
    url: str
    db: Connections
    bus: Bus
    io_bound: bool
    pipeline: StepPipeline | None
    clock: Clock | None
    _ready: bool

    def _conn(self) -> sqlite3.Connection:
        if not self._ready:
            self.migrate()
        return self.db.get()

    def _read(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if not self._ready:
            self.migrate()
        return self.db.read(sql, params)

    def _write_one(self, sql: str, params: Any = ()) -> int:
        """One statement in its own write transaction; returns the rows changed."""
        self._conn()
        with self.db.write() as conn:
            return conn.execute(sql, params).rowcount

    def migrate(self) -> list[str]:
        applied = migrate(self.db, time.time())
        self._ready = True
        return applied

    def pending_migrations(self) -> list[str]:
        try:
            done = {r[0] for r in self.db.read("SELECT name FROM tether_migrations")}
        except sqlite3.OperationalError:  # no such table: a new database
            done = set()
        return [name for name, _ in migration_files("tether.storage.sqlite.migrations")
                if name not in done]

    def _send(self, messages: list[tuple[str, str]]) -> None:
        for group, message in dict.fromkeys(messages):
            self.bus.publish(group, message)

    def _step_params(self, lease: Lease, step: StepRecord) -> dict[str, object]:
        return {**step.__dict__, "run_id": lease.run_id, "token": lease.token}

    def _flush(self, conn: sqlite3.Connection, lease: Lease, flush: Flush, now: float) -> None:
        if flush.metadata is not None:
            conn.execute(Q["save_metadata"], {"metadata": flush.metadata, "now": now,
                                              "run_id": lease.run_id, "token": lease.token})
        if flush.logs:
            conn.executemany(Q["insert_event"], [
                (lease.run_id, log.at, "log", log.attempt, log.level,
                 json.dumps({"message": log.message, "logger": log.logger}))
                for log in flush.logs])
