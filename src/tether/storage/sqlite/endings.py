"""Claims and endings in SQLite (a part of SQLiteStorage): claiming runs (claim.py), and the
write transaction that ends many attempts (finish.py's one UPDATE for the plain ones, one
statement each for the others) and claims for the places they free; the wake-ups after it."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from tether.clock import new_id
from tether.models import RunStatus
from tether.storage.offers import Offer
from tether.storage.records import (
    ClaimedRun,
    ClaimRequest,
    Finish,
    RunRecord,
)
from tether.storage.sqlite.access import Q, SQLiteAccess
from tether.storage.sqlite.claim import claim_in_line, claim_ready, now_in_lock, ready_now
from tether.storage.sqlite.finish import finish_plain
from tether.storage.sqlite.rows import run_record
from tether.wakeup import WAITERS, WORKERS, packed


def _attempt_row(attempt_id: str, item: Finish, run_row: Any, now: float) -> tuple[object, ...]:
    """The attempts-table row of an attempt that ended (`run_row`: its run as updated)."""
    lease, transition = item.lease, item.transition
    return (attempt_id, lease.run_id, lease.attempt, lease.worker_id, transition.attempt_outcome,
            run_row["attempt_started_at"] or now, now, transition.error, run_row["status"],
            transition.reason)


class Endings(SQLiteAccess):
    """The worker's claims, and the commits that end its attempts."""

    _limited_cache: frozenset[str]
    _limited_at: float

    def claim_runs(self, worker_id: str, task_ids: list[str], queues: list[str] | None,
                   limit: int, now: float, lease_seconds: float,
                   version: str | None = None,
                   unpinned: list[str] | None = None) -> list[ClaimedRun]:
        if limit <= 0 or not task_ids:
            return []
        self._conn()
        req = ClaimRequest(worker_id, task_ids, queues, limit, now, lease_seconds,
                           version=version, unpinned=unpinned or [])
        ready = ready_now(self.db.get(), req)
        if not ready:
            return []
        with self.db.write() as conn:
            taken = claim_ready(conn, now_in_lock(req, self.clock), ready, Q["claim_update"])
        return [c for t in taken for c in t.runs()]

    def next_ready_at(self, task_ids: list[str], queues: list[str] | None,
                      now: float) -> float | None:
        row = self._read(Q["next_ready_at"], (now,)).fetchone()  # (filters: only a hint)
        return None if row is None else row[0]

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None,
                        offer: Offer | None = None  # (never given: workers offer on PostgreSQL)
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        self._conn()
        ending = {item.lease.run_id for item in items}
        handed: set[str] = set()  # runs whose place a run held in line took over
        attempt_ids = [new_id("attempt") for _ in items]  # made before the write lock is taken
        simple = [item for item in items if item.plain()]  # ended by one statement
        refill = claim_next is not None and claim_next.limit > 0
        ready = ready_now(self.db.get(), claim_next) if claim_next is not None and refill else []
        with self.db.write() as conn:
            ended = finish_plain(conn, simple, now) if simple else {}
            ends = [ended.get(item.lease.run_id) if item.plain()
                    else self._finish_one(conn, item, now, ending, handed) for item in items]
            conn.executemany(Q["finish_attempt"], [
                _attempt_row(attempt_id, item, end[2], now)
                for attempt_id, item, end in zip(attempt_ids, items, ends, strict=True)
                if end is not None])
            taken = []
            if claim_next is not None and ready:
                taken += claim_ready(conn, now_in_lock(claim_next, self.clock), ready,
                                     Q["claim_update"])
            if claim_next is not None and claim_next.standby:
                taken.append(claim_in_line(conn, claim_next, Q["claim_update"]))
        # records are built once the write lock is released
        finished = [None if end is None else run_record(*end) for end in ends]
        for record in finished:
            if record is not None and record.id in handed:
                record.handed_over = True
        # (a place taken over frees nothing: no other worker to wake for it)
        self._announce(finished, handed)
        return finished, [c for t in taken for c in t.runs()]

    def _announce(self, finished: list[RunRecord | None], handed: set[str]) -> None:
        wake_workers = False
        done: list[str] = []
        for record in finished:
            if record is None:
                continue
            if RunStatus(record.status).is_final:
                done.append(f"done {record.id}")
                wake_workers |= record.resolves is not None  # its parent may be queued again
            # back in the queue, or a slot of a limited queue is free for another worker
            wake_workers |= record.status == RunStatus.QUEUED or (
                record.id not in handed and record.queue in self._limited())
        for datagram in packed(done):  # the ends of one commit in one datagram
            self.bus.publish(WAITERS, datagram)
        if wake_workers:
            self.bus.publish(WORKERS, "slot")

    def _limited(self) -> frozenset[str]:
        """Names of queues with a concurrency limit, re-read at most every few seconds."""
        if time.monotonic() - self._limited_at > 5.0:
            rows = self._read("SELECT name FROM queues WHERE concurrency IS NOT NULL")
            self._limited_cache = frozenset(r[0] for r in rows)
            self._limited_at = time.monotonic()
        return self._limited_cache

    def _finish_one(self, conn: sqlite3.Connection, item: Finish, now: float,
                    ending: set[str], handed: set[str]) -> tuple[str, sqlite3.Cursor, Any] | None:
        """End one attempt (its attempt row is written by the caller); a successor not ending in
        the same call (`ending`) takes its place, and the attempt's run id then goes into
        `handed`. Returns the run's row as the update returned it (with its statement and
        cursor)."""
        lease, transition, flush = item.lease, item.transition, item.flush
        if flush:
            if conn.execute(Q["check_lease"], (lease.run_id, lease.token)).fetchone() is None:
                return None
            self._flush(conn, lease, flush, now)
        if item.step is not None and conn.execute(
                Q["save_step"], self._step_params(lease, item.step)).rowcount != 1:
            return None
        to, available_at = transition.to, transition.available_at
        if transition.waiting_for and transition.waiting_for.startswith("gather"):
            # several waits at once: the wake time from the parts park_gather stored
            available_at = conn.execute(Q["gather_due"], {"wait": transition.waiting_for,
                                                          "now": now}).fetchone()[0]
            if available_at <= now:
                to, available_at = RunStatus.QUEUED, now  # all over before the run parked
        elif transition.waiting_for and conn.execute(
                Q["wait_resolved"], {"w": transition.waiting_for}).fetchone()[0]:
            to, available_at = RunStatus.QUEUED, now  # done before the run even parked
        cursor = conn.execute(Q["finish_run"], {
            "to": to, "output": transition.output, "error": transition.error,
            "available_at": available_at, "refund": int(transition.refund_attempt),
            "now": now, "final": transition.is_final, "run_id": lease.run_id,
            "token": lease.token, "waiting_for": transition.waiting_for,
            "expired_before": item.expired_before,
        })
        row = cursor.fetchone()
        if row is None:
            return None
        heir = item.successor
        if heir is not None and heir.run_id not in ending and conn.execute(
                Q["take_place"], {"now": now, "run_id": heir.run_id, "token": heir.token}
        ).rowcount == 1:
            handed.add(lease.run_id)
        return Q["finish_run"], cursor, row
