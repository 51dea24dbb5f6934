"""Opening SQLite connections: one per thread, WAL mode, write transactions that wait their turn."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from tether.errors import StorageUnavailable
from tether.storage.sql import migration_files

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
AUTOCHECKPOINT_PAGES = 20_000
# While another connection writes, retries only yield the CPU for this long before they sleep:
# a worker's commit holds the lock for some hundreds of microseconds, and a sleep overshoots by
# tens (the timer's slack), which a producer that commits each trigger pays on every collision
SPIN_SECONDS = 0.002


class Connections:
    """Thread-local connections to one database file.

    `synchronous=NORMAL` in WAL mode survives a killed process but may lose the last commits in a
    power cut; `FULL` survives both at the cost of an fsync per commit. A missing file is created;
    a missing folder only with `create_folder` (else a mistyped path would become a new database).
    """

    def __init__(self, path: Path, synchronous: str = "NORMAL", busy_timeout: float = 60.0, *,
                 create_folder: bool = False) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise StorageUnavailable(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.create_folder = create_folder
        self._local = threading.local()
        self._all: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            # A connection per thread, closed when the thread ends (its thread-local data is
            # dropped with it): a worker runs each attempt of a sync task in a thread of its own
            held = _Held(self._open())
            self._local.held = held
            with self._lock:
                self._all.add(held)
        return held.conn

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        if not self.create_folder and not folder.is_dir():
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: the directory "
                                     f"{folder} does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # No built-in busy handler: it sleeps 1, 2, 5, 10... ms between tries, which costs
            # milliseconds whenever two processes write at once. `_retry` waits in microseconds.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=0,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            self._retry(conn.execute, "PRAGMA journal_mode=WAL", ())
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # Commits on the hot path do not checkpoint (a checkpoint fsyncs, milliseconds): the
            # worker's housekeeping thread does, every second. This is only the safety net.
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
        return conn

    def _retry(self, execute: Any, sql: str, params: Any) -> Any:
        """Run `execute(sql, params)`, retrying while the database is busy, up to busy_timeout."""
        delay, deadline, spin_until = 0.00005, None, 0.0
        while True:
            try:
                return execute(sql, params)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline, spin_until = now + self.busy_timeout, now + SPIN_SECONDS
                if now >= deadline:
                    raise StorageUnavailable(
                        f"SQLite database {self.path} stayed locked for {self.busy_timeout:g}s"
                    ) from None
                if now < spin_until:
                    os.sched_yield()  # the holder usually commits within a millisecond
                    continue
                time.sleep(delay)
                delay = min(delay * 2, 0.0005)

    def read(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        conn = self.get()
        return self._retry(conn.execute, sql, params)  # type: ignore[no-any-return]

    def write(self) -> WriteTransaction:
        """A write transaction that takes the write lock up front (no lock-upgrade deadlocks):
        `with db.write() as conn: ...` commits, or rolls back on an exception."""
        return WriteTransaction(self)

    def close(self) -> None:
        with self._lock:
            for held in list(self._all):
                held.conn.close()
            self._all.clear()
        self._local = threading.local()

    def open_count(self) -> int:
        """How many connections are open: one per live thread that used this database."""
        with self._lock:
            return len(self._all)


class _Held:
    """One thread's connection, closed once nothing refers to it (the thread ended, or the
    connections were closed and the thread-local data dropped)."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # (also at interpreter exit)
            self.conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (worth a retry)."""
    return "locked" in str(exc) or "busy" in str(exc)


class WriteTransaction:
    """`Connections.write()`: BEGIN IMMEDIATE (retried while another writer holds the lock),
    then COMMIT, or ROLLBACK on an exception. (A class rather than a generator: it runs for
    every write.)"""

    __slots__ = ("_conn", "_db")

    def __init__(self, db: Connections) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        conn = self._conn = self._db.get()
        self._db._retry(conn.execute, "BEGIN IMMEDIATE", ())
        return conn

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        assert self._conn is not None
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")


def split_statements(script: str) -> list[str]:
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    return statements


def migrate(connections: Connections, now: float) -> list[str]:
    applied_now: list[str] = []
    with connections.write() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tether_migrations "
            "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM tether_migrations")}
        for name, script in migration_files("tether.storage.sqlite.migrations"):
            if name in done:
                continue
            for statement in split_statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO tether_migrations VALUES (?, ?)", (name, now))
            applied_now.append(name)
    return applied_now
