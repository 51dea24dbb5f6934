"""The step writer: the rows of running attempts, written in a pipeline (storage/pipeline.py).

An at-least-once step's result need not be waited for before the next step starts: if it is
lost, the step runs again. So a worker's attempts queue their rows here and go on; one thread
writes everything queued (of all attempts) in one statement per batch, fenced by each row's
lease token, and one batch at a time: a batch is sent only once the one before it committed,
so a later row is never committed before an earlier one.

Plain step rows commit without waiting for the WAL flush (asynchronous commit): a crash of the
PostgreSQL server may lose the last of them, and only a suffix, because asynchronous commits
reach the disk in the order they committed. A batch that carries a row whose loss would break a
promise (a `once` start marker, a completed wait) commits durably, and so does the batch a
`drain` asks for; a durable commit puts every commit before it on disk too.

The writer keeps its own connection, not the pool's: a session that is still alive is proof
that the server did not restart under it. When the connection breaks, what it committed since
its last durable commit (the "window", at most DURABLE_EVERY seconds of rows) may be lost, so
after reconnecting the writer sends the window again, with the batch whose outcome it did not
learn, durably, before anything newer. Sending a row twice is harmless: each is an upsert of
the same values, fenced by the same lease token, and nothing newer of its run was sent since.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from tether.errors import LeaseLost, StorageUnavailable
from tether.storage.records import Flush, Lease, StepRecord
from tether.storage.sql import load_queries

Q = load_queries("tether.storage.postgres", "steps.sql")
QUERIES = load_queries("tether.storage.postgres", "queries.sql")
Conn = psycopg.Connection[Any]
log = logging.getLogger("tether.storage")

MAX_BATCH = 2000  # entries in one statement
DURABLE_EVERY = 0.25  # seconds: while rows keep coming, a durable commit at least this often
WINDOW_ROWS = 20_000  # ... or once this many entries committed without one
STEP_FIELDS = ("key", "name", "kind", "status", "output", "error", "attempt", "started_at",
               "finished_at", "seq")


@dataclass
class _Entry:
    ticket: int
    lease: Lease
    step: StepRecord | None
    flush: Flush | None
    durable: bool
    at: float  # when it was sent (the time metadata is stored with)


@dataclass
class _Held:
    """What the writer knows of one attempt's rows."""

    last: int = 0  # the ticket of its last entry
    error: BaseException | None = None  # refused (LeaseLost), or the error that lost its rows


def write_flush(conn: Conn, lease: Lease, flush: Flush, now: float) -> None:
    """Metadata and log lines of an attempt, fenced by its lease token."""
    if flush.metadata is not None:
        conn.execute(QUERIES["save_metadata"], {"metadata": flush.metadata, "now": now,
                                                "run_id": lease.run_id, "token": lease.token})
    if flush.logs:
        conn.cursor().executemany(QUERIES["insert_log"], [
            {"run_id": lease.run_id, "token": lease.token, "at": line.at,
             "attempt": line.attempt, "level": line.level,
             "data": json.dumps({"message": line.message, "logger": line.logger})}
            for line in flush.logs])


def _step_params(entries: list[_Entry]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in ("run_id", "token", *STEP_FIELDS, "n")}
    for n, entry in enumerate(entries):
        step = entry.step
        assert step is not None
        columns["run_id"].append(entry.lease.run_id)
        columns["token"].append(entry.lease.token)
        for name in STEP_FIELDS:
            columns[name].append(getattr(step, name))
        columns["n"].append(n)
    return columns


class _Retries:
    """When to send a batch again: a lost connection until `timeout` passes, a conflict that
    rolled the batch back up to ten times."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline: float | None = None
        self.delay = 0.05
        self.conflicts = 0

    def reconnect(self, exc: Exception) -> None:
        now = time.monotonic()
        self.deadline = self.deadline or now + self.timeout
        if now >= self.deadline:
            raise StorageUnavailable(f"PostgreSQL unreachable: {exc}") from None
        log.warning("step writer: PostgreSQL connection lost (%s); retrying", str(exc).strip())
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 1.0)

    def conflict(self, exc: Exception) -> None:
        self.conflicts += 1
        if self.conflicts > 10:
            raise exc
        time.sleep(0.001 * self.conflicts)


class StepWriter:
    """The PostgreSQL StepPipeline: one thread, one connection, one batch in flight."""

    def __init__(self, connect: Callable[[], Conn], reconnect_timeout: float = 60.0) -> None:
        self._connect = connect
        self.reconnect_timeout = reconnect_timeout
        self._cv = threading.Condition()
        self._queue: deque[_Entry] = deque()
        self._held: dict[Lease, _Held] = {}
        self._ticket = 0  # the last ticket given
        self._durable = 0  # every entry up to this ticket is on disk, refused or failed
        self._want = 0  # a drain waits for the entries up to this ticket to be on disk
        self._thread: threading.Thread | None = None
        self._closing = False
        # the writer thread's own (no lock: only that thread touches them)
        self._conn: Conn | None = None
        self._window: list[_Entry] = []  # committed on this connection without a WAL flush
        self._window_since = 0.0
        self._resend = False  # the connection broke: the window may be lost

    # -- the attempts' side ---------------------------------------------------------------------
    def send(self, lease: Lease, step: StepRecord | None, flush: Flush | None,
             durable: bool = False) -> None:
        with self._cv:
            held = self._held.get(lease)
            if held is None:
                held = self._held[lease] = _Held()
            if held.error is not None:
                return  # an earlier row was refused or lost: nothing after it is stored
            self._ticket += 1
            held.last = self._ticket
            self._queue.append(_Entry(self._ticket, lease, step, flush, durable, time.time()))
            if self._thread is None:
                self._start()
            self._cv.notify()

    def drain(self, lease: Lease) -> None:
        with self._cv:
            held = self._held.get(lease)
            if held is None:
                return
            if held.error is None and self._durable < held.last:
                self._want = max(self._want, held.last)
                self._cv.notify()
                while held.error is None and self._durable < held.last:
                    self._cv.wait()
            if held.error is not None:
                raise held.error

    def settled(self, lease: Lease) -> bool:
        with self._cv:
            held = self._held.get(lease)
            return held is None or (held.error is None and self._durable >= held.last)

    def failure(self, lease: Lease) -> BaseException | None:
        held = self._held.get(lease)  # (one read of a dict: no lock needed)
        return None if held is None else held.error

    def forget(self, lease: Lease) -> None:
        with self._cv:
            self._held.pop(lease, None)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._conn is not None and (thread is None or not thread.is_alive()):
            self._conn.close()
            self._conn = None

    # -- the writer thread ----------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tether-step-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and self._want <= self._durable and not self._closing:
                    self._cv.wait()
                if not self._queue and self._want <= self._durable:
                    return  # closing, and nothing left to write
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                last = batch[-1].ticket if batch else self._ticket
                durable = self._want > self._durable or any(e.durable for e in batch)
            durable = durable or self._window_due()
            try:
                refused, durable = self._write(batch, durable)
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError) or len({e.lease for e in batch}) < 2:
                    self._failed(batch, exc, last)
                    continue
                refused, durable = self._write_apart(batch, durable)
            except Exception as exc:  # the server stayed away past reconnect_timeout
                self._failed(batch, exc, last)
                continue
            with self._cv:
                for lease in refused:
                    held = self._held.get(lease)
                    if held is not None and held.error is None:
                        held.error = LeaseLost(lease.run_id)
                if durable:
                    self._durable = max(self._durable, last)
                self._cv.notify_all()

    def _write_apart(self, batch: list[_Entry], durable: bool) -> tuple[set[Lease], bool]:
        """A batch the server refused as a whole (a value it does not take): each attempt's
        entries on their own, so one attempt's bad row fails that attempt only."""
        groups: dict[Lease, list[_Entry]] = {}
        for entry in batch:
            groups.setdefault(entry.lease, []).append(entry)
        refused: set[Lease] = set()
        for group in groups.values():
            try:
                more, durable = self._write(group, durable)
            except Exception as exc:
                self._failed(group, exc, 0)
            else:
                refused |= more
        return refused, durable

    def _window_due(self) -> bool:
        return bool(self._window) and (len(self._window) >= WINDOW_ROWS or
                                       time.monotonic() - self._window_since >= DURABLE_EVERY)

    def _write(self, batch: list[_Entry], durable: bool) -> tuple[set[Lease], bool]:
        """Write a batch (after a broken connection: the window first, durably); returns the
        leases whose rows were refused, and whether the commit was durable."""
        retries = _Retries(self.reconnect_timeout)
        while True:
            entries = batch
            if self._resend:
                entries, durable = self._window + batch, True
            try:
                if self._conn is None:
                    self._conn = self._connect()
                refused = self._execute(self._conn, entries, durable)
            except psycopg.OperationalError as exc:
                self._drop_connection()
                retries.reconnect(exc)
                continue
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                retries.conflict(exc)  # rolled back as a whole: safe to send again
                continue
            self._resend = False
            if durable:
                self._window = []
            elif batch:
                if not self._window:
                    self._window_since = time.monotonic()
                self._window.extend(batch)
            return refused, durable

    def _execute(self, conn: Conn, entries: list[_Entry], durable: bool) -> set[Lease]:
        """One round trip, one transaction: the statements are pipelined on an autocommit
        connection and committed at the pipeline's single Sync."""
        rows = [e for e in entries if e.step is not None]
        with conn.pipeline():
            conn.execute(Q["durable" if durable else "relaxed"])
            saved = conn.execute(Q["save_steps"], _step_params(rows)) if rows else None
            for entry in entries:
                if entry.flush:
                    write_flush(conn, entry.lease, entry.flush, entry.at)
        if saved is None:
            return set()
        refused = {(r["run_id"], r["token"]) for r in saved.fetchall()}
        return {e.lease for e in rows if (e.lease.run_id, e.lease.token) in refused}

    def _drop_connection(self) -> None:
        self._resend = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _failed(self, batch: list[_Entry], exc: Exception, last: int) -> None:
        """A batch that could not be written: its attempts, and those whose rows may have been
        lost with the window, write nothing more; drains raise `exc`."""
        if isinstance(exc, psycopg.Error) and not isinstance(exc, psycopg.OperationalError):
            exc = StorageUnavailable(f"step rows not written: {str(exc).strip()}")
        log.error("step writer: %d row(s) not written: %s", len(batch), exc)
        lost = {e.lease for e in batch}
        if self._resend:
            lost |= {e.lease for e in self._window}
            self._window, self._resend = [], False
        with self._cv:
            for lease in lost:
                held = self._held.get(lease)
                if held is not None and held.error is None:
                    held.error = exc
            self._durable = max(self._durable, last)
            self._cv.notify_all()
