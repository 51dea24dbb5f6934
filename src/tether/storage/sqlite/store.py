"""The SQLite backend: an embedded file, nothing to install. Many processes on one machine may
share it; SQLite's write lock serializes their writes, WAL mode lets reads run alongside."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tether.clock import Clock, new_id
from tether.engine.states import Transition, expired, promoted, sources
from tether.errors import LeaseLost
from tether.models import RunStatus
from tether.storage.pipeline import StepPipeline
from tether.storage.records import (
    AttemptRecord,
    ClaimedRun,
    ClaimRequest,
    EventRecord,
    Finish,
    Flush,
    Fork,
    Lease,
    NewRun,
    QueueRecord,
    RunFilter,
    RunRecord,
    StepRecord,
    TaskRecord,
    TokenRecord,
    WorkerRecord,
    key_holds,
    new_record,
    status_event,
)
from tether.storage.schedules import ScheduleRecord, SlotClaim
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply
from tether.storage.sql import load_queries, migration_files
from tether.storage.sqlite import schedules as sqlite_schedules
from tether.storage.sqlite import server as sqlite_server
from tether.storage.sqlite.claim import claim_in_line, claim_ready, now_in_lock, ready_now
from tether.storage.sqlite.connection import Connections, migrate
from tether.storage.sqlite.finish import finish_plain, plain
from tether.storage.sqlite.rows import run_record, run_records
from tether.wakeup import WAITERS, WORKERS, Bus, after_transition, local_bus

Q = load_queries("tether.storage.sqlite", "queries.sql")


def _run_values(new: NewRun, now: float) -> dict[str, Any]:
    """The parameters of insert_run and debounce_run."""
    return {**new.__dict__, "tags": json.dumps(new.tags) if new.tags else "[]", "now": now,
            "idempotency_active": int(new.idempotency_key is not None)}


def _attempt_row(attempt_id: str, item: Finish, run_row: Any, now: float) -> tuple[object, ...]:
    """The attempts-table row of an attempt that ended (`run_row`: its run as updated)."""
    lease, transition = item.lease, item.transition
    return (attempt_id, lease.run_id, lease.attempt, lease.worker_id, transition.attempt_outcome,
            run_row["attempt_started_at"] or now, now, transition.error, run_row["status"],
            transition.reason)


class SQLiteStorage:
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL",
                 busy_timeout: float = 60.0, create_folder: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self.db = Connections(self.path, synchronous, busy_timeout, create_folder=create_folder)
        self.bus: Bus = local_bus(str(self.path))
        self.io_bound = False  # microseconds per call: the worker's loop calls it directly
        self.pipeline: StepPipeline | None = None  # each write is microseconds: none needed
        self.clock: Clock | None = None
        self._ready = False
        self._limited_cache: frozenset[str] = frozenset()
        self._limited_at = -1e9

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

    # -- schema -------------------------------------------------------------------------------
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

    def close(self) -> None:
        self.db.close()
        close_bus = getattr(self.bus, "close", None)
        if close_bus is not None:
            close_bus()

    # -- tasks, queues, workers ---------------------------------------------------------------
    def register_tasks(self, tasks: list[TaskRecord], queues: list[QueueRecord]) -> None:
        self._conn()
        with self.db.write() as conn:
            conn.executemany(Q["upsert_task"], [
                (t.id, t.queue, t.options, t.code_version, t.updated_at) for t in tasks])
            now = max((t.updated_at for t in tasks), default=0.0)
            conn.executemany(Q["upsert_queue"], [(q.name, q.concurrency, now) for q in queues])

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._read(Q["get_task"], (task_id,)).fetchone()
        return None if row is None else TaskRecord(**dict(row))

    def list_tasks(self) -> list[TaskRecord]:
        return [TaskRecord(**dict(r)) for r in self._read(Q["list_tasks"])]

    def ensure_queues(self, queues: list[QueueRecord], now: float) -> None:
        self._conn()
        with self.db.write() as conn:
            conn.executemany(Q["upsert_queue"], [(q.name, q.concurrency, now) for q in queues])

    def list_queues(self) -> list[QueueRecord]:
        return [QueueRecord(r[0], r[1], bool(r[2])) for r in self._read(Q["list_queues"])]

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool:
        return self._write_one(Q["set_queue_paused"], (int(paused), now, name)) == 1

    def register_worker(self, worker: WorkerRecord) -> None:
        self._write_one(Q["register_worker"], (
            worker.id, worker.hostname, worker.pid, worker.queues, worker.concurrency,
            worker.started_at, worker.last_seen_at, worker.version))

    def repin_runs(self, runs: list[tuple[str, str | None]], version: str) -> list[str]:
        self._conn()
        with self.db.write() as conn:
            return [run_id for run_id, old in runs if conn.execute(
                "UPDATE runs SET version = ? WHERE id = ? AND version IS ?",
                (version, run_id, old)).rowcount == 1]

    def version_counts(self) -> list[tuple[str | None, str, int]]:
        return [(r[0], r[1], r[2]) for r in self._read(Q["version_counts"])]

    def stop_worker(self, worker_id: str, now: float) -> None:
        self._write_one(Q["stop_worker"], (now, worker_id))

    def list_workers(self, alive_since: float) -> list[WorkerRecord]:
        rows = self._read(Q["list_workers"], (alive_since,))
        return [WorkerRecord(**dict(r)) for r in rows]

    # -- runs ---------------------------------------------------------------------------------
    def create_runs(self, runs: list[NewRun], now: float) -> list[tuple[RunRecord, bool]]:
        self._conn()
        if any(new.idempotency_key is not None or new.debounce_key is not None for new in runs):
            with self.db.write() as conn:
                out = self._create_all(conn, runs, now)
        else:  # only inserts: their rows are built before the write lock is taken, and after
            values = [_run_values(new, now) for new in runs]
            tags = [(tag, new.id) for new in runs for tag in new.tags]
            with self.db.write() as conn:
                conn.executemany(Q["insert_run"], values)
                if tags:
                    conn.executemany(Q["insert_tag"], tags)
            out = [(new_record(new, v["tags"], 0, now), True) for new, v in zip(runs, values,
                                                                                strict=True)]
        if any(created for _, created in out):
            self.bus.publish(WORKERS, "runs")
        return out

    def create_child_runs(self, lease: Lease, step: StepRecord, runs: list[NewRun],
                          now: float) -> list[tuple[RunRecord, bool]]:
        self._conn()
        with self.db.write() as conn:
            out = self._create_all(conn, runs, now)
            step.output = json.dumps({"runs": [record.id for record, _ in out]})
            if conn.execute(Q["save_step"], self._step_params(lease, step)).rowcount != 1:
                raise LeaseLost(lease.run_id)  # rolls the children back too
        if any(created for _, created in out):
            self.bus.publish(WORKERS, "runs")
        return out

    def create_fork(self, fork: Fork, now: float) -> tuple[RunRecord, int]:
        self._conn()
        with self.db.write() as conn:
            record = self._insert(conn, fork.run, now)
            copied = conn.execute(Q["copy_steps"], (fork.run.id, fork.source_id,
                                                    fork.before_seq)).rowcount
            conn.execute(Q["insert_event"], fork.event(now))
        self.bus.publish(WORKERS, "runs")
        return record, copied

    def _create_all(self, conn: sqlite3.Connection, runs: list[NewRun],
                    now: float) -> list[tuple[RunRecord, bool]]:
        out: list[tuple[RunRecord, bool]] = []
        for new in runs:
            existing = self._live_idempotent(conn, new, now)
            if existing is not None:
                out.append((existing, False))
                continue
            record = self._insert(conn, new, now)
            out.append((record, record.id == new.id))
        return out

    def _live_idempotent(self, conn: sqlite3.Connection, new: NewRun, now: float) -> RunRecord | None:
        if new.idempotency_key is None:
            return None
        row = conn.execute(Q["find_idempotent"], (new.task_id, new.idempotency_key)).fetchone()
        if row is None:
            return None
        record = RunRecord.from_mapping(row)
        if not key_holds(record, now):  # its TTL passed, or its run failed: a new run
            conn.execute(Q["release_idempotency_key"], (record.id,))
            return None
        return record

    def _insert(self, conn: sqlite3.Connection, new: NewRun, now: float) -> RunRecord:
        values = _run_values(new, now)
        if new.debounce_key is not None:
            row = conn.execute(Q["debounce_run"], values).fetchone()
            if row["id"] != new.id:
                return RunRecord.from_mapping(row)  # an earlier trigger's run, pushed back
        else:
            conn.execute(Q["insert_run"], values)
        if new.tags:
            conn.executemany(Q["insert_tag"], [(tag, new.id) for tag in new.tags])
        return new_record(new, values["tags"], values["idempotency_active"], now)

    def get_run(self, run_id: str) -> RunRecord | None:
        cursor = self._read(Q["get_run"], (run_id,))
        row = cursor.fetchone()
        return None if row is None else run_record(Q["get_run"], cursor, row)

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        by_id: dict[str, RunRecord] = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            sql = f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(chunk))})"
            cursor = self._read(sql, chunk)
            by_id.update((r.id, r) for r in run_records(sql, cursor, cursor.fetchall()))
        return [by_id[i] for i in run_ids if i in by_id]

    def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        where: list[str] = []
        params: list[object] = []
        for column, values in (("status", flt.status), ("task_id", flt.task_id),
                               ("queue", flt.queue)):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        if flt.tag:
            where.append(
                f"id IN (SELECT run_id FROM run_tags WHERE tag IN ({','.join('?' * len(flt.tag))}))")
            params += flt.tag
        for clause, value in (("created_at >= ?", flt.created_after),
                              ("created_at < ?", flt.created_before), ("id < ?", flt.before_id),
                              ("parent_id = ?", flt.parent_id), ("id > ?", flt.newer_than_id),
                              ("waiting_for = ?", flt.waiting_for),
                              ("id IN (SELECT run_id FROM batch_items WHERE batch_id = ?)",
                               flt.batch_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        newer = flt.newer_than_id is not None  # the runs just newer: nearest first, then flipped
        rows = self._read(f"{sql} ORDER BY id {'ASC' if newer else 'DESC'} LIMIT ?",
                          [*params, flt.limit])
        records = [RunRecord.from_mapping(r) for r in rows]
        return records[::-1] if newer else records

    def transition(self, run_id: str, transition: Transition, now: float,
                   expect: str | None = None) -> RunRecord | None:
        self._conn()
        allowed = sources(transition.to)
        with self.db.write() as conn:
            row = conn.execute("SELECT status, lease_token, attempts, worker_id, attempt_started_at"
                               " FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row[0] not in allowed or (expect is not None and row[0] != expect):
                return None
            updated = conn.execute(
                "UPDATE runs SET status = :to, available_at = coalesce(:available_at, available_at),"
                " updated_at = :now, finished_at = CASE WHEN :final THEN :now ELSE NULL END,"
                " lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,"
                " waiting_for = NULL, max_attempts = max(max_attempts, attempts + :grant)"
                " WHERE id = :id RETURNING *",
                {"to": transition.to, "available_at": transition.available_at, "now": now,
                 "final": transition.is_final, "id": run_id,
                 "grant": int(transition.to == RunStatus.QUEUED and row[0] != "DELAYED")},
            ).fetchone()
            if row[1] and transition.attempt_outcome:
                conn.execute(Q["finish_attempt"], (new_id("attempt"), run_id, row[2], row[3],
                                                   transition.attempt_outcome, row[4], now, None,
                                                   None, None))
            conn.execute(Q["insert_event"], status_event(run_id, now, row[2] or None, transition.to,
                                                   transition.reason, row[0]))
        record = RunRecord.from_mapping(updated)
        self._send(after_transition(run_id, transition.to, row[0] == "EXECUTING",
                                    record.resolves is not None))
        return record

    def _send(self, messages: list[tuple[str, str]]) -> None:
        for group, message in dict.fromkeys(messages):
            self.bus.publish(group, message)

    # -- the worker's side --------------------------------------------------------------------
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
        return taken.runs()

    def next_ready_at(self, task_ids: list[str], queues: list[str] | None,
                      now: float) -> float | None:
        row = self._read(Q["next_ready_at"], (now,)).fetchone()  # (filters: only a hint)
        return None if row is None else row[0]

    def load_steps(self, run_id: str) -> dict[str, StepRecord]:
        rows = self._read(Q["load_steps"], (run_id,))
        return {r[0]: StepRecord(*r) for r in rows}

    def load_steps_many(self, run_ids: list[str]) -> dict[str, dict[str, StepRecord]]:
        found: dict[str, dict[str, StepRecord]] = {}
        for r in self._read(Q["load_steps_many"], (json.dumps(run_ids),)):
            found.setdefault(r[0], {})[r[1]] = StepRecord(*r[1:])
        return found

    def _step_params(self, lease: Lease, step: StepRecord) -> dict[str, object]:
        return {**step.__dict__, "run_id": lease.run_id, "token": lease.token}

    def save_step(self, lease: Lease, step: StepRecord, flush: Flush | None = None) -> None:
        self._conn()
        with self.db.write() as wconn:
            if wconn.execute(Q["save_step"], self._step_params(lease, step)).rowcount != 1:
                raise LeaseLost(lease.run_id)
            if flush:
                self._flush(wconn, lease, flush, step.finished_at or step.started_at)

    def save_state(self, lease: Lease, state: str, flush: Flush | None = None) -> None:
        now = time.time()
        with self.db.write() as conn:
            params = {"state": state, "now": now, "run_id": lease.run_id, "token": lease.token}
            if conn.execute(Q["save_state"], params).rowcount != 1:
                raise LeaseLost(lease.run_id)
            if flush:
                self._flush(conn, lease, flush, now)

    def flush(self, lease: Lease, flush: Flush) -> None:
        self._conn()
        with self.db.write() as conn:
            if conn.execute(Q["check_lease"], (lease.run_id, lease.token)).fetchone() is None:
                raise LeaseLost(lease.run_id)
            self._flush(conn, lease, flush, time.time())

    def _flush(self, conn: sqlite3.Connection, lease: Lease, flush: Flush, now: float) -> None:
        if flush.metadata is not None:
            conn.execute(Q["save_metadata"], {"metadata": flush.metadata, "now": now,
                                              "run_id": lease.run_id, "token": lease.token})
        if flush.logs:
            conn.executemany(Q["insert_event"], [
                (lease.run_id, log.at, "log", log.attempt, log.level,
                 json.dumps({"message": log.message, "logger": log.logger}))
                for log in flush.logs])

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        self._conn()
        ending = {item.lease.run_id for item in items}
        handed: set[str] = set()  # runs whose place a run held in line took over
        attempt_ids = [new_id("attempt") for _ in items]  # made before the write lock is taken
        simple = [item for item in items if plain(item)]  # ended by one statement
        refill = claim_next is not None and claim_next.limit > 0
        ready = ready_now(self.db.get(), claim_next) if claim_next is not None and refill else []
        with self.db.write() as conn:
            ended = finish_plain(conn, simple, now) if simple else {}
            ends = [ended.get(item.lease.run_id) if plain(item)
                    else self._finish_one(conn, item, now, ending, handed) for item in items]
            conn.executemany(Q["finish_attempt"], [
                _attempt_row(attempt_id, item, end[2], now)
                for attempt_id, item, end in zip(attempt_ids, items, ends, strict=True)
                if end is not None])
            taken = []
            if claim_next is not None and ready:
                taken.append(claim_ready(conn, now_in_lock(claim_next, self.clock), ready,
                                         Q["claim_update"]))
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
        for record in finished:
            if record is None:
                continue
            if RunStatus(record.status).is_final:
                self.bus.publish(WAITERS, f"done {record.id}")
                wake_workers |= record.resolves is not None  # its parent may be queued again
            # back in the queue, or a slot of a limited queue is free for another worker
            wake_workers |= record.status == RunStatus.QUEUED or (
                record.id not in handed and record.queue in self._limited())
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
        if transition.waiting_for and conn.execute(
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

    def renew_leases(self, worker_id: str, run_ids: list[str], now: float,
                     lease_seconds: float) -> set[str]:
        self._conn()
        with self.db.write() as conn:
            held: set[str] = set()
            if run_ids:
                sql = f"{Q['renew_leases']} ({','.join('?' * len(run_ids))}) RETURNING id"
                held = {r[0] for r in conn.execute(sql, [now + lease_seconds, worker_id, *run_ids])}
            conn.execute(Q["touch_worker"], (now, worker_id))
        return held

    def expired_leases(self, now: float, dead_workers: list[str]) -> list[RunRecord]:
        rows = list(self._read(Q["expired_leases"], (now,)))
        if dead_workers:
            rows += self._read(
                f"SELECT * FROM runs WHERE status = 'EXECUTING' AND lease_expires_at >= ? AND "
                f"worker_id IN ({','.join('?' * len(dead_workers))})", [now, *dead_workers])
        return [RunRecord.from_mapping(r) for r in rows]

    def expire_runs(self, now: float) -> list[str]:
        self._conn()
        with self.db.write() as conn:
            rows = conn.execute(Q["expire_runs"], {"now": now}).fetchall()
            conn.executemany(Q["insert_event"], [
                status_event(r[0], now, None, "EXPIRED", expired().reason)
                for r in rows])
        self._send([m for r in rows for m in after_transition(r[0], "EXPIRED", False, r[1])])
        return [r[0] for r in rows]

    def promote_delayed(self, now: float) -> int:
        self._conn()
        with self.db.write() as conn:
            rows = conn.execute(Q["promote_delayed"], {"now": now}).fetchall()
            conn.executemany(Q["insert_event"], [
                status_event(r[0], now, None, "QUEUED", promoted().reason, "DELAYED") for r in rows])
            waits = conn.execute(Q["promote_waiting"], {"now": now}).fetchall()
            conn.executemany(Q["end_sleeps"], [(now, r[0]) for r in waits])
            conn.executemany(Q["insert_event"], [
                status_event(r[0], now, r[1], "QUEUED", "wait over", "WAITING") for r in waits])
        if rows or waits:
            self.bus.publish(WORKERS, "runs")
        return len(rows) + len(waits)

    def resolve_waits(self, now: float) -> int:
        if not self._read(Q["resolved_waits"]).fetchall():
            return 0
        with self.db.write() as conn:  # checked again under the write lock
            ids = [r[0] for r in conn.execute(Q["resolved_waits"]).fetchall()]
            for run_id in ids:
                self._resume(conn, run_id, None, now, "what it waited for is done")
        if ids:
            self.bus.publish(WORKERS, "runs")
        return len(ids)

    def _resume(self, conn: sqlite3.Connection, run_id: str, waiting_for: str | None, now: float,
                reason: str) -> bool:
        row = conn.execute(Q["resume_run"], {"id": run_id, "waiting_for": waiting_for,
                                             "now": now}).fetchone()
        if row is not None:
            conn.execute(Q["insert_event"], status_event(run_id, now, row[1], "QUEUED", reason,
                                                         "WAITING"))
        return row is not None

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, token: TokenRecord, lease: Lease | None = None,
                     step: StepRecord | None = None) -> tuple[TokenRecord, bool]:
        self._conn()
        with self.db.write() as conn:
            existing = None
            if token.idempotency_key is not None:  # an expired key is released first
                conn.execute(Q["release_token_key"], (token.idempotency_key, token.created_at))
                row = conn.execute(Q["find_token"], (token.idempotency_key,)).fetchone()
                existing = None if row is None else TokenRecord(**dict(row))
            if lease is not None and step is not None:
                step.output = json.dumps((existing or token).id)
                if conn.execute(Q["save_step"], self._step_params(lease, step)).rowcount != 1:
                    raise LeaseLost(lease.run_id)
            if existing is not None:
                return existing, False
            conn.execute(Q["insert_token"], token.__dict__)
        return token, True

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._read(Q["get_token"], (token_id,)).fetchone()
        return None if row is None else TokenRecord(**dict(row))

    def list_tokens(self, status: list[str] | None, limit: int, before_id: str | None = None,
                    after_id: str | None = None) -> list[TokenRecord]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if status:
            where.append(f"status IN ({','.join('?' * len(status))})")
            params += status
        for op, bound in (("<", before_id), (">", after_id)):
            if bound is not None:
                where.append(f"id {op} ?")
                params.append(bound)
        order = "ASC" if after_id is not None else "DESC"
        rows = self._read(f"SELECT * FROM waitpoints WHERE {' AND '.join(where)} "
                          f"ORDER BY id {order} LIMIT ?", [*params, limit])
        return [TokenRecord(**dict(r)) for r in rows]

    def complete_token(self, token_id: str, output: str, now: float
                       ) -> tuple[TokenRecord | None, bool]:
        self._conn()
        resumed = []
        with self.db.write() as conn:
            changed = conn.execute(Q["complete_token"], {"id": token_id, "output": output,
                                                         "now": now}).rowcount == 1
            if changed:
                for (run_id,) in conn.execute(Q["token_waiters"], (token_id,)).fetchall():
                    if self._resume(conn, run_id, token_id, now, f"token {token_id} completed"):
                        resumed.append(run_id)
            row = conn.execute(Q["get_token"], (token_id,)).fetchone()
        if resumed:
            self.bus.publish(WORKERS, "runs")
        return (None if row is None else TokenRecord(**dict(row))), changed

    def time_out_token(self, token_id: str, now: float) -> TokenRecord | None:
        self._conn()
        with self.db.write() as conn:
            conn.execute(Q["time_out_token"], {"id": token_id, "now": now})
            row = conn.execute(Q["get_token"], (token_id,)).fetchone()
        return None if row is None else TokenRecord(**dict(row))

    def upkeep(self) -> None:
        """Copy the write-ahead log into the database file (a passive checkpoint: it never
        blocks writers), so that it stays small without commits paying for it."""
        self._read("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- history ------------------------------------------------------------------------------
    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [AttemptRecord(**dict(r)) for r in self._read(Q["list_attempts"], (run_id,))]

    def list_events(self, run_id: str) -> list[EventRecord]:
        return [EventRecord(**dict(r)) for r in self._read(Q["list_events"], (run_id,))]

    def reset_once_steps(self, run_id: str) -> list[str]:
        self._conn()
        with self.db.write() as conn:
            return [r[0] for r in conn.execute(Q["reset_once_steps"], (run_id,)).fetchall()]

    # -- schedules (statements in sqlite/schedules.py) ----------------------------------------
    def save_schedule(self, schedule: ScheduleRecord) -> tuple[ScheduleRecord, bool]:
        self._conn()
        return sqlite_schedules.save(self.db, schedule)

    def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        self._conn()
        return sqlite_schedules.get(self.db, schedule_id)

    def list_schedules(self) -> list[ScheduleRecord]:
        self._conn()
        return sqlite_schedules.list_all(self.db)

    def delete_schedule(self, schedule_id: str) -> bool:
        self._conn()
        return sqlite_schedules.delete(self.db, schedule_id)

    def set_schedule_active(self, schedule_id: str, active: bool, next_run_at: float | None,
                            now: float) -> ScheduleRecord | None:
        self._conn()
        return sqlite_schedules.set_active(self.db, schedule_id, active, next_run_at, now)

    def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]:
        self._conn()
        return sqlite_schedules.due(self.db, now, limit)

    def fire_schedule(self, claim: SlotClaim) -> bool:
        self._conn()
        with self.db.write() as conn:
            if not sqlite_schedules.claim_slot(conn, claim):
                return False
            if claim.run is not None:
                self._insert(conn, claim.run, claim.now)
        if claim.run is not None:
            self.bus.publish(WORKERS, "runs")
        return True

    def retire_declared(self, keep: list[str], now: float) -> list[str]:
        self._conn()
        return sqlite_schedules.retire_declared(self.db, keep, now)

    # -- the HTTP server (statements in sqlite/server.py) -------------------------------------
    def _db(self) -> Connections:
        self._conn()
        return self.db

    def create_api_key(self, key: ApiKeyRecord) -> None:
        sqlite_server.create_api_key(self._db(), key)

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return sqlite_server.find_api_key(self._db(), key_hash)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        return sqlite_server.list_api_keys(self._db())

    def revoke_api_key(self, key_id: str, now: float) -> ApiKeyRecord | None:
        return sqlite_server.revoke_api_key(self._db(), key_id, now)

    def touch_api_key(self, key_id: str, now: float) -> None:
        sqlite_server.touch_api_key(self._db(), key_id, now)

    def ensure_setting(self, name: str, value: str) -> str:
        return sqlite_server.ensure_setting(self._db(), name, value)

    def create_batch(self, batch: BatchRecord) -> tuple[BatchRecord, bool]:
        return sqlite_server.create_batch(self._db(), batch)

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        return sqlite_server.get_batch(self._db(), batch_id)

    def add_batch_runs(self, batch_id: str, items: list[tuple[int, NewRun]],
                       now: float) -> list[tuple[int, RunRecord, bool]]:
        out = sqlite_server.add_batch_runs(self._db(), self._create_all, batch_id, items, now)
        if any(created for _, _, created in out):
            self.bus.publish(WORKERS, "runs")
        return out

    def batch_run_ids(self, batch_id: str) -> list[str]:
        return sqlite_server.batch_run_ids(self._db(), batch_id)

    def batch_of(self, run_id: str) -> str | None:
        return sqlite_server.batch_of(self._db(), run_id)

    def get_reply(self, key: str) -> StoredReply | None:
        return sqlite_server.get_reply(self._db(), key)

    def save_reply(self, reply: StoredReply) -> StoredReply:
        return sqlite_server.save_reply(self._db(), reply)

    def prune_replies(self, before: float) -> int:
        return sqlite_server.prune_replies(self._db(), before)

    def put_packet(self, path: str, data: bytes, now: float) -> None:
        sqlite_server.put_packet(self._db(), path, data, now)

    def get_packet(self, path: str) -> bytes | None:
        return sqlite_server.get_packet(self._db(), path)

    def add_tags(self, run_id: str, tags: list[str], now: float) -> RunRecord | None:
        return sqlite_server.add_tags(self._db(), Q["insert_tag"], run_id, tags, now)

    def set_metadata(self, run_id: str, metadata: str, now: float) -> RunRecord | None:
        return sqlite_server.set_metadata(self._db(), run_id, metadata, now)

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        return sqlite_server.queue_stats(self._db())
