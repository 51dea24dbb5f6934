"""Wake-ups through LISTEN/NOTIFY. Each listener holds one dedicated connection; publishing is a
`pg_notify` on a pooled connection. A listener whose connection broke reports no messages and
reconnects on its next use; callers fall back to polling meanwhile, so nothing is stranded."""

from __future__ import annotations

import contextlib
import select
import time
from typing import Any

import psycopg

from tether.storage.postgres.connection import Connections


def channel(schema: str | None, group: str) -> str:
    return f"tether_{schema or 'public'}_{group}"


class PgListener:
    def __init__(self, connections: Connections, group: str) -> None:
        self.connections = connections
        self.channel = channel(connections.schema, group)
        self.conn: psycopg.Connection[Any] | None = None
        self.generation = 0
        self._next_try = 0.0
        self._connect()

    def _connect(self) -> None:
        """(Re)connect and LISTEN, at most once a second while the server is unreachable."""
        if time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + 1.0
        with contextlib.suppress(psycopg.Error):
            conn = psycopg.connect(self.connections.conninfo, autocommit=True, connect_timeout=2)
            conn.execute(f'LISTEN "{self.channel}"')
            self.conn = conn
            self.generation += 1

    def fileno(self) -> int:
        if self.conn is None or self.conn.closed:
            self._connect()
        return -1 if self.conn is None else self.conn.fileno()

    def drain(self) -> list[str]:
        if self.conn is None or self.conn.closed:
            self._connect()
            return []
        pgconn = self.conn.pgconn
        messages: list[str] = []
        try:
            pgconn.consume_input()
        except psycopg.Error:
            self._drop()
            return []
        while (note := pgconn.notifies()) is not None:
            messages.append(note.extra.decode())
        return messages

    def wait(self, timeout: float) -> list[str]:
        fd = self.fileno()
        if fd < 0:
            select.select([], [], [], timeout)
            return []
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        return self.drain() if ready else []

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def close(self) -> None:
        self._drop()

    def __del__(self) -> None:
        self._drop()


class PgBus:
    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    def publish(self, group: str, message: str) -> None:
        name = channel(self.connections.schema, group)
        with contextlib.suppress(Exception):  # a hint: a lost one only delays a listener
            self.connections.run(lambda c: c.execute("SELECT pg_notify(%s, %s)", (name, message)))

    def listen(self, group: str) -> PgListener:
        return PgListener(self.connections, group)
