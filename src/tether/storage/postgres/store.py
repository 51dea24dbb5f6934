"""The PostgreSQL backend: any number of workers on any number of machines, one database.
PostgreSQL is the coordinator: claims lock rows with SKIP LOCKED, queue limits are slot rows,
wake-ups are LISTEN/NOTIFY."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from tether.clock import Clock, new_id
from tether.engine.states import Transition, expired, promoted, sources
from tether.errors import LeaseLost
from tether.models import RunStatus
from tether.storage.pipeline import StepPipeline
from tether.storage.postgres import schedules as pg_schedules
from tether.storage.postgres import server as pg_server
from tether.storage.postgres.arrays import array_literal
from tether.storage.postgres.bus import PgBus, channel
from tether.storage.postgres.connection import Connections
from tether.storage.postgres.step_writer import StepWriter, write_flush
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
from tether.wakeup import READY, WAITERS, WORKERS, Bus, after_transition

Q = load_queries("tether.storage.postgres", "queries.sql")
Conn = psycopg.Connection[Any]
MIGRATION_LOCK = 0x7E7E_0001
STEP_COLUMNS = ("run_id", "key", "name", "kind", "status", "output", "error", "attempt",
                "started_at", "finished_at", "seq")


def _in_claim_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claimed rows in the order tether_claim picked them (priority, then age, then id)."""
    return sorted(rows, key=lambda r: (-r["priority"], r["available_at"], r["id"]))


def _wake(runs: list[NewRun], now: float) -> str:
    """The workers' message for new runs: READY when every one can start now."""
    ready = all(new.status == "QUEUED" and new.available_at <= now for new in runs)
    return READY if ready else "runs"


def _ended(row: dict[str, Any]) -> RunRecord:
    """A run as finish_runs left it, saying whether its slot went to its successor."""
    record = RunRecord.from_mapping(row)
    record.handed_over = bool(row["handed_over"])
    return record


def _claimed(row: dict[str, Any], lease_token: str, worker_id: str,
             standby: bool = False) -> ClaimedRun:
    record = RunRecord.from_mapping(row)
    # (a run held in line gets its started_at when it takes over a slot; waiting_for is set by a
    # wait until the attempt ends)
    resumed = (record.attempts > 1 or record.waiting_for is not None or (
        record.started_at is not None and record.started_at != record.attempt_started_at))
    return ClaimedRun(record, Lease(record.id, lease_token, record.attempts, worker_id), resumed,
                      standby)


class PostgresStorage:
    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Connections(url)
        self.bus: Bus = PgBus(self.db)
        # step rows of running attempts, written behind their back (storage/pipeline.py)
        self.writer = StepWriter(self.db.connect, self.db.reconnect_timeout)
        self.pipeline: StepPipeline | None = self.writer
        self.io_bound = True  # each call is a round trip: the worker's loop calls it in a thread
        # (the order of stored times comes from the slot rows here: see migration 0007)
        self.clock: Clock | None = None
        self._ready = False

    def _run(self, work: Any) -> Any:
        if not self._ready:
            self.migrate()
        return self.db.run(work)

    def _tx(self, work: Any) -> Any:
        if not self._ready:
            self.migrate()
        return self.db.transaction(work)

    def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return self._run(lambda c: c.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return self._run(lambda c: c.execute(sql, params).fetchone())  # type: ignore[no-any-return]

    # -- schema -------------------------------------------------------------------------------
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

    def close(self) -> None:
        self.writer.close()
        self.db.close()

    # -- tasks, queues, workers ---------------------------------------------------------------
    def register_tasks(self, tasks: list[TaskRecord], queues: list[QueueRecord]) -> None:
        now = max((t.updated_at for t in tasks), default=time.time())

        def work(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.executemany(Q["upsert_task"], [
                    (t.id, t.queue, t.options, t.code_version, t.updated_at) for t in tasks])
                cur.executemany(Q["upsert_queue"], [(q.name, q.concurrency, now) for q in queues])

        self._tx(work)

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one(Q["get_task"], (task_id,))
        return None if row is None else TaskRecord(**row)

    def list_tasks(self) -> list[TaskRecord]:
        return [TaskRecord(**r) for r in self._all(Q["list_tasks"])]

    def ensure_queues(self, queues: list[QueueRecord], now: float) -> None:
        self._tx(lambda c: c.cursor().executemany(
            Q["upsert_queue"], [(q.name, q.concurrency, now) for q in queues]))

    def list_queues(self) -> list[QueueRecord]:
        return [QueueRecord(r["name"], r["concurrency"], bool(r["paused"]))
                for r in self._all(Q["list_queues"])]

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool:
        count = self._run(lambda c: c.execute(Q["set_queue_paused"], (int(paused), now, name)).rowcount)
        return bool(count == 1)

    def register_worker(self, worker: WorkerRecord) -> None:
        self._run(lambda c: c.execute(Q["register_worker"], (
            worker.id, worker.hostname, worker.pid, worker.queues, worker.concurrency,
            worker.started_at, worker.last_seen_at, worker.version)))

    def repin_runs(self, runs: list[tuple[str, str | None]], version: str) -> list[str]:
        rows = self._all(
            "UPDATE runs r SET version = %s FROM unnest(%s::text[], %s::text[]) AS m (id, old) "
            "WHERE r.id = m.id AND r.version IS NOT DISTINCT FROM m.old RETURNING r.id",
            (version, [run_id for run_id, _ in runs], [old for _, old in runs]))
        return [r["id"] for r in rows]

    def version_counts(self) -> list[tuple[str | None, str, int]]:
        return [(r["version"], r["status"], r["n"]) for r in self._all(Q["version_counts"], ())]

    def stop_worker(self, worker_id: str, now: float) -> None:
        self._run(lambda c: c.execute(Q["stop_worker"], (now, worker_id)))

    def list_workers(self, alive_since: float) -> list[WorkerRecord]:
        return [WorkerRecord(**r) for r in self._all(Q["list_workers"], (alive_since,))]

    # -- runs ---------------------------------------------------------------------------------
    def create_runs(self, runs: list[NewRun], now: float) -> list[tuple[RunRecord, bool]]:
        if len(runs) == 1 and not runs[0].idempotency_key and not runs[0].debounce_key:
            # one statement, one round trip
            self._run(lambda conn: conn.execute(Q["add_run"], self._add_params(runs[0], now)))
            return [(new_record(runs[0], json.dumps(runs[0].tags), 0, now), True)]
        return self._tx(lambda conn: self._create_all(conn, runs, now))  # type: ignore[no-any-return]

    def _create_all(self, conn: Conn, runs: list[NewRun], now: float
                    ) -> list[tuple[RunRecord, bool]]:
        plain = [new for new in runs if not new.idempotency_key and not new.debounce_key]
        if plain:
            conn.execute(Q["add_runs"], self._add_many_params(plain, now))
        keyed = {new.id: self._create(conn, new, now) for new in runs
                 if new.idempotency_key or new.debounce_key}
        if any(created for _, created in keyed.values()):
            conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))  # sent at commit
        return [keyed.get(new.id) or (new_record(new, json.dumps(new.tags), 0, now), True)
                for new in runs]

    def create_child_runs(self, lease: Lease, step: StepRecord, runs: list[NewRun],
                          now: float) -> list[tuple[RunRecord, bool]]:
        def work(conn: Conn) -> list[tuple[RunRecord, bool]]:
            out = self._create_all(conn, runs, now)  # wakes the workers at commit
            step.output = json.dumps({"runs": [record.id for record, _ in out]})
            if conn.execute(Q["save_step"], self._step_params(lease, step)).rowcount != 1:
                raise LeaseLost(lease.run_id)  # rolls the children back too
            return out

        return self._tx(work)  # type: ignore[no-any-return]

    def create_fork(self, fork: Fork, now: float) -> tuple[RunRecord, int]:
        def work(conn: Conn) -> int:
            conn.execute(Q["add_run"], self._add_params(fork.run, now))  # wakes at commit
            copied = conn.execute(Q["copy_steps"], (fork.run.id, fork.source_id,
                                                    fork.before_seq)).rowcount
            conn.execute(Q["insert_event"], fork.event(now))
            return copied

        copied: int = self._tx(work)
        return new_record(fork.run, json.dumps(fork.run.tags), 0, now), copied

    def _step_params(self, lease: Lease, step: StepRecord) -> dict[str, Any]:
        return {**step.__dict__, "run_id": lease.run_id, "token": lease.token}

    def _notify(self, conn: Conn, messages: list[tuple[str, str]]) -> None:
        """NOTIFYs inside the caller's transaction: delivered when it commits."""
        for group, message in dict.fromkeys(messages):
            conn.execute(Q["notify"], (self._channel(group), message))

    def _channel(self, group: str) -> str:
        return channel(self.db.schema, group)

    def _add_params(self, new: NewRun, now: float) -> dict[str, Any]:
        """A run without an idempotency key: one statement that also stores its tags and wakes
        the workers (an id conflict can only be this run, stored by a try whose answer was lost)."""
        return {**new.__dict__, "tags": json.dumps(new.tags), "now": now,
                "tag_list": array_literal(new.tags), "channel": self._channel(WORKERS),
                "wake": _wake([new], now)}

    def _add_many_params(self, runs: list[NewRun], now: float) -> dict[str, Any]:
        """Runs without idempotency keys for one statement: as JSON, one document for the runs
        and one for their tags (an id conflict can only be a run stored by an earlier try)."""
        rows = [{**n.__dict__, "tags": json.dumps(n.tags)} for n in runs]  # (extra keys ignored)
        tags = [{"tag": tag, "run_id": n.id} for n in runs for tag in n.tags]
        return {"runs": json.dumps(rows), "run_tags": json.dumps(tags), "now": now,
                "channel": self._channel(WORKERS), "wake": _wake(runs, now)}

    def _create(self, conn: Conn, new: NewRun, now: float) -> tuple[RunRecord, bool]:
        if new.idempotency_key is not None:
            row = conn.execute(Q["find_idempotent"], (new.task_id, new.idempotency_key)).fetchone()
            if row is not None:
                record = RunRecord.from_mapping(row)
                if key_holds(record, now):
                    return record, False
                # its TTL passed, or its run failed: released, and a new run is made
                conn.execute(Q["release_idempotency_key"], (record.id,))
        values = {**new.__dict__, "tags": json.dumps(new.tags), "now": now,
                  "idempotency_active": int(new.idempotency_key is not None)}
        if new.debounce_key is not None:
            row = conn.execute(Q["debounce_run"], values).fetchone()
            assert row is not None  # an upsert returns its row
            if row["id"] != new.id:
                return RunRecord.from_mapping(row), False  # an earlier trigger's run, pushed back
            inserted = True
        else:
            inserted = conn.execute(Q["insert_run"], values).rowcount == 1
        if inserted and new.tags:
            conn.cursor().executemany(Q["insert_tag"], [(tag, new.id) for tag in new.tags])
        row = conn.execute(Q["get_run"], (new.id,)).fetchone()
        if row is None and new.idempotency_key is not None:
            # a concurrent trigger with the key committed its run first (the insert waited for
            # it, then did nothing): that run is the answer
            row = conn.execute(Q["find_idempotent"], (new.task_id, new.idempotency_key)).fetchone()
        return RunRecord.from_mapping(row), inserted

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._one(Q["get_run"], (run_id,))
        return None if row is None else RunRecord.from_mapping(row)

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        rows = self._all("SELECT * FROM runs WHERE id = ANY (%s)", (run_ids,))
        by_id = {r["id"]: RunRecord.from_mapping(r) for r in rows}
        return [by_id[i] for i in run_ids if i in by_id]

    def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        where: list[str] = []
        params: list[object] = []
        for column, values in (("status", flt.status), ("task_id", flt.task_id),
                               ("queue", flt.queue)):
            if values:
                where.append(f"{column} = ANY (%s)")
                params.append(list(values))
        if flt.tag:
            where.append("id IN (SELECT run_id FROM run_tags WHERE tag = ANY (%s))")
            params.append(list(flt.tag))
        for clause, value in (("created_at >= %s", flt.created_after),
                              ("created_at < %s", flt.created_before), ("id < %s", flt.before_id),
                              ("parent_id = %s", flt.parent_id), ("id > %s", flt.newer_than_id),
                              ("waiting_for = %s", flt.waiting_for),
                              ("id IN (SELECT run_id FROM batch_items WHERE batch_id = %s)",
                               flt.batch_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        newer = flt.newer_than_id is not None  # the runs just newer: nearest first, then flipped
        rows = self._all(f"{sql} ORDER BY id {'ASC' if newer else 'DESC'} LIMIT %s",
                         [*params, flt.limit])
        records = [RunRecord.from_mapping(r) for r in rows]
        return records[::-1] if newer else records

    def transition(self, run_id: str, transition: Transition, now: float,
                   expect: str | None = None) -> RunRecord | None:
        allowed = [str(s) for s in sources(transition.to)]

        def work(conn: Conn) -> RunRecord | None:
            row = conn.execute("SELECT status, lease_token, attempts, worker_id, attempt_started_at"
                               " FROM runs WHERE id = %s FOR UPDATE", (run_id,)).fetchone()
            if row is None or row["status"] not in allowed or (
                    expect is not None and row["status"] != expect):
                return None
            updated = conn.execute(
                "UPDATE runs SET status = %(to)s,"
                " available_at = coalesce(%(available_at)s, available_at), updated_at = %(now)s,"
                " finished_at = CASE WHEN %(final)s THEN %(now)s ELSE NULL END,"
                " lease_token = NULL, lease_expires_at = NULL, worker_id = NULL,"
                " waiting_for = NULL, max_attempts = greatest(max_attempts, attempts + %(grant)s)"
                " WHERE id = %(id)s RETURNING *",
                {"to": str(transition.to), "available_at": transition.available_at, "now": now,
                 "final": transition.is_final, "id": run_id,
                 "grant": int(transition.to == RunStatus.QUEUED and row["status"] != "DELAYED")},
            ).fetchone()
            if row["lease_token"] and transition.attempt_outcome:
                conn.execute("UPDATE queue_slots SET run_id = NULL, freed_at = %s WHERE run_id = %s",
                             (now, run_id))
                conn.execute(
                    "INSERT INTO attempts (id, run_id, number, worker_id, status, started_at,"
                    " finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (new_id("attempt"), run_id, row["attempts"], row["worker_id"],
                     transition.attempt_outcome, row["attempt_started_at"] or now, now))
            conn.execute(Q["insert_event"], status_event(run_id, now, row["attempts"] or None,
                                                   str(transition.to), transition.reason,
                                                   row["status"]))
            self._notify(conn, after_transition(run_id, transition.to,
                                                row["status"] == "EXECUTING"))
            return RunRecord.from_mapping(updated)

        return self._tx(work)  # type: ignore[no-any-return]

    # -- the worker's side --------------------------------------------------------------------
    def claim_runs(self, worker_id: str, task_ids: list[str], queues: list[str] | None,
                   limit: int, now: float, lease_seconds: float,
                   version: str | None = None,
                   unpinned: list[str] | None = None) -> list[ClaimedRun]:
        if limit <= 0 or not task_ids:
            return []
        req = ClaimRequest(worker_id, task_ids, queues, limit, now, lease_seconds,
                           version=version, unpinned=unpinned or [])
        return self._run(lambda conn: self._claim(conn, req))  # type: ignore[no-any-return]

    def _claim(self, conn: Conn, req: ClaimRequest) -> list[ClaimedRun]:
        """One statement (the plpgsql function): its own transaction when autocommitted."""
        token = new_id("lease")
        rows = conn.execute(Q["claim"], self._claim_params(req, token, True)).fetchall()
        return [_claimed(row, token, req.worker_id) for row in _in_claim_order(rows)]

    @staticmethod
    def _claim_params(req: ClaimRequest, token: str, relaxed: bool) -> tuple[Any, ...]:
        """`relaxed`: the claim commits on its own, without waiting for the WAL flush (never
        when it shares a transaction with writes that must be durable)."""
        return (req.worker_id, array_literal(req.task_ids),
                None if req.queues is None else array_literal(req.queues), req.limit, req.now,
                req.lease_seconds, token, relaxed, req.version, array_literal(req.unpinned))

    def next_ready_at(self, task_ids: list[str], queues: list[str] | None,
                      now: float) -> float | None:
        row = self._one(Q["next_ready_at"], (now, task_ids))
        return None if row is None else row["at"]

    def load_steps(self, run_id: str) -> dict[str, StepRecord]:
        return {r["key"]: StepRecord(**r) for r in self._all(Q["load_steps"], (run_id,))}

    def load_steps_many(self, run_ids: list[str]) -> dict[str, dict[str, StepRecord]]:
        found: dict[str, dict[str, StepRecord]] = {}
        for r in self._all(Q["load_steps_many"], (run_ids,)):
            run_id = r.pop("run_id")
            found.setdefault(run_id, {})[r["key"]] = StepRecord(**r)
        return found

    def save_step(self, lease: Lease, step: StepRecord, flush: Flush | None = None) -> None:
        params = self._step_params(lease, step)
        sql = Q["save_step_relaxed" if step.kind == "step" else "save_step"]

        def work(conn: Conn) -> None:
            if conn.execute(sql, params).rowcount != 1:
                raise LeaseLost(lease.run_id)
            if flush:
                self._flush(conn, lease, flush, step.finished_at or step.started_at)

        (self._tx if flush else self._run)(work)

    def save_state(self, lease: Lease, state: str, flush: Flush | None = None) -> None:
        now = time.time()

        def work(conn: Conn) -> None:
            params = {"state": state, "now": now, "run_id": lease.run_id, "token": lease.token}
            if conn.execute(Q["save_state"], params).rowcount != 1:
                raise LeaseLost(lease.run_id)
            if flush:
                self._flush(conn, lease, flush, now)

        self._tx(work)

    def flush(self, lease: Lease, flush: Flush) -> None:
        def work(conn: Conn) -> None:
            if conn.execute(Q["check_lease"], (lease.run_id, lease.token)).fetchone() is None:
                raise LeaseLost(lease.run_id)
            self._flush(conn, lease, flush, time.time())

        self._tx(work)

    def _flush(self, conn: Conn, lease: Lease, flush: Flush, now: float) -> None:
        write_flush(conn, lease, flush, now)

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        """Every ending in one statement (runs, slots, attempt rows, metadata, logs, wake-ups),
        and the claim for the places they free in the same transaction: both statements are
        pipelined, so ending a batch and taking the next runs is one round trip and one commit."""
        request = claim_next if claim_next is not None and (
            claim_next.limit > 0 or claim_next.standby) else None
        if not items and request is None:
            return [], []
        finish_params = self._finish_params(items, now) if items else None
        token = new_id("lease")

        def work(conn: Conn) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                      list[dict[str, Any]]]:
            # Pipelined on an autocommit connection: both statements are sent at once and run
            # in one implicit transaction, committed (durably: the claim is not relaxed here)
            # at the pipeline's single Sync.
            with conn.pipeline():
                conn.execute(Q["generic_plans"])
                ended = conn.execute(Q["finish_runs"], finish_params) if finish_params else None
                taken = conn.execute(Q["claim"], self._claim_params(request, token, False)
                                     ) if request and request.limit > 0 else None
                lined = conn.execute(Q["claim_standby"], self._standby_params(request, token)
                                     ) if request and request.standby else None
            return ((ended.fetchall() if ended else []), (taken.fetchall() if taken else []),
                    (lined.fetchall() if lined else []))

        rows, claim_rows, standby_rows = self._run(work)
        by_id = {row["id"]: _ended(row) for row in rows}
        finished = [by_id.get(item.lease.run_id) for item in items]
        frees = sum(1 for row in rows if row["frees"])
        claimed = [_claimed(row, token, request.worker_id)
                   for row in _in_claim_order(claim_rows)] if request else []
        if frees > len(claimed):  # places this worker did not take: another worker may
            self.bus.publish(WORKERS, "slot")
        if request is not None:
            claimed += [_claimed(row, token, request.worker_id, standby=True)
                        for row in _in_claim_order(standby_rows)]
        return finished, claimed

    @staticmethod
    def _standby_params(req: ClaimRequest, token: str) -> dict[str, Any]:
        return {"queue": [q for q, _, _ in req.standby], "key": [k for _, k, _ in req.standby],
                "n": [n for _, _, n in req.standby], "now": req.now, "tasks": req.task_ids,
                "token": token, "lease": req.lease_seconds, "worker": req.worker_id,
                "version": req.version, "unpinned": req.unpinned}

    def _finish_params(self, items: list[Finish], now: float) -> dict[str, Any]:
        columns: dict[str, list[Any]] = {name: [] for name in (
            "run_id", "token", "to", "output", "error", "available_at", "refund", "final",
            "attempt_id", "attempt", "worker_id", "outcome", "reason", "metadata", "waiting_for",
            "heir", "heir_token", "expiry",
            "log_run_id", "log_at", "log_attempt", "log_level", "log_data",
            *(f"step_{name}" for name in STEP_COLUMNS))}
        for item in items:
            lease, t, flush = item.lease, item.transition, item.flush
            for name, value in (
                    ("run_id", lease.run_id), ("token", lease.token), ("to", str(t.to)),
                    ("output", t.output), ("error", t.error), ("available_at", t.available_at),
                    ("refund", int(t.refund_attempt)), ("final", t.is_final),
                    ("attempt_id", new_id("attempt")), ("attempt", lease.attempt),
                    ("worker_id", lease.worker_id), ("outcome", t.attempt_outcome),
                    ("reason", t.reason), ("metadata", flush.metadata if flush else None),
                    ("waiting_for", t.waiting_for),
                    ("heir", item.successor.run_id if item.successor else None),
                    ("heir_token", item.successor.token if item.successor else None),
                    ("expiry", item.expired_before)):
                columns[name].append(value)
            if item.step is not None:
                row = {**item.step.__dict__, "run_id": lease.run_id}
                for name in STEP_COLUMNS:
                    columns[f"step_{name}"].append(row[name])
            for log in flush.logs if flush else []:
                columns["log_run_id"].append(lease.run_id)
                columns["log_at"].append(log.at)
                columns["log_attempt"].append(log.attempt)
                columns["log_level"].append(log.level)
                columns["log_data"].append(json.dumps({"message": log.message, "logger": log.logger}))
        return {**{name: array_literal(values) for name, values in columns.items()},
                "now": now, "waiters": self._channel(WAITERS), "workers": self._channel(WORKERS)}

    def renew_leases(self, worker_id: str, run_ids: list[str], now: float,
                     lease_seconds: float) -> set[str]:
        rows = self._all(Q["renew_leases"], {"until": now + lease_seconds, "worker_id": worker_id,
                                             "now": now, "run_ids": run_ids})
        return {r["id"] for r in rows}

    def expired_leases(self, now: float, dead_workers: list[str]) -> list[RunRecord]:
        rows = self._all(Q["expired_leases"], (now, dead_workers))
        return [RunRecord.from_mapping(r) for r in rows]

    def expire_runs(self, now: float) -> list[str]:
        def work(conn: Conn) -> list[str]:
            rows = conn.execute(Q["expire_runs"], {"now": now}).fetchall()
            ids = [r["id"] for r in rows]
            if ids:
                conn.cursor().executemany(Q["insert_event"], [
                    status_event(i, now, None, "EXPIRED", expired().reason) for i in ids])
            self._notify(conn, [m for r in rows
                                for m in after_transition(r["id"], "EXPIRED", False, r["is_child"])])
            return ids

        return self._tx(work)  # type: ignore[no-any-return]

    def promote_delayed(self, now: float) -> int:
        def work(conn: Conn) -> int:
            ids = [r["id"] for r in conn.execute(Q["promote_delayed"], {"now": now}).fetchall()]
            if ids:
                conn.cursor().executemany(Q["insert_event"], [
                    status_event(i, now, None, "QUEUED", promoted().reason, "DELAYED") for i in ids])
            waits = conn.execute(Q["promote_waiting"], {"now": now}).fetchall()
            if waits:
                conn.execute(Q["end_sleeps"], (now, [r["id"] for r in waits]))
                conn.cursor().executemany(Q["insert_event"], [
                    status_event(r["id"], now, r["attempts"], "QUEUED", "wait over", "WAITING")
                    for r in waits])
            if ids or waits:
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            return len(ids) + len(waits)

        return self._tx(work)  # type: ignore[no-any-return]

    def resolve_waits(self, now: float) -> int:
        if not self._all(Q["resolved_waits"] + " LIMIT 1"):  # the usual answer: one plain read
            return 0

        def work(conn: Conn) -> int:
            ids = [r["id"] for r in conn.execute(
                Q["resolved_waits"] + " FOR UPDATE SKIP LOCKED").fetchall()]
            for run_id in ids:
                self._resume(conn, run_id, None, now, "what it waited for is done")
            if ids:
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            return len(ids)

        return self._tx(work)  # type: ignore[no-any-return]

    def _resume(self, conn: Conn, run_id: str, waiting_for: str | None, now: float,
                reason: str) -> bool:
        row = conn.execute(Q["resume_run"], {"id": run_id, "waiting_for": waiting_for,
                                             "now": now}).fetchone()
        if row is not None:
            conn.execute(Q["insert_event"], status_event(run_id, now, row["attempts"], "QUEUED",
                                                         reason, "WAITING"))
        return row is not None

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, token: TokenRecord, lease: Lease | None = None,
                     step: StepRecord | None = None) -> tuple[TokenRecord, bool]:
        def work(conn: Conn) -> tuple[TokenRecord, bool]:
            created = True
            if token.idempotency_key is not None:  # an expired key is released first
                conn.execute(Q["release_token_key"], (token.idempotency_key, token.created_at))
                created = conn.execute(Q["insert_token"], token.__dict__).rowcount == 1
                row = conn.execute(Q["find_token"], (token.idempotency_key,)).fetchone()
                assert row is not None  # inserted now or earlier
                found = TokenRecord(**row)
            else:
                conn.execute(Q["insert_token"], token.__dict__)
                found = token
            if lease is not None and step is not None:
                step.output = json.dumps(found.id)
                if conn.execute(Q["save_step"], self._step_params(lease, step)).rowcount != 1:
                    raise LeaseLost(lease.run_id)
            return found, created

        return self._tx(work)  # type: ignore[no-any-return]

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._one(Q["get_token"], (token_id,))
        return None if row is None else TokenRecord(**row)

    def list_tokens(self, status: list[str] | None, limit: int, before_id: str | None = None,
                    after_id: str | None = None) -> list[TokenRecord]:
        order = "ASC" if after_id is not None else "DESC"
        rows = self._all(
            "SELECT * FROM waitpoints WHERE (%(status)s::text[] IS NULL OR status = ANY (%(status)s))"
            " AND (%(before)s::text IS NULL OR id < %(before)s)"
            f" AND (%(after)s::text IS NULL OR id > %(after)s) ORDER BY id {order} LIMIT %(limit)s",
            {"status": status or None, "before": before_id, "after": after_id, "limit": limit})
        return [TokenRecord(**r) for r in rows]

    def complete_token(self, token_id: str, output: str, now: float
                       ) -> tuple[TokenRecord | None, bool]:
        def work(conn: Conn) -> tuple[TokenRecord | None, bool]:
            changed = conn.execute(Q["complete_token"], {"id": token_id, "output": output,
                                                         "now": now}).rowcount == 1
            if changed:
                waiters = conn.execute(Q["token_waiters"], (token_id,)).fetchall()
                resumed = [self._resume(conn, r["id"], token_id, now, f"token {token_id} completed")
                           for r in waiters]
                if any(resumed):
                    conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            row = conn.execute(Q["get_token"], (token_id,)).fetchone()
            return (None if row is None else TokenRecord(**row)), changed

        return self._tx(work)  # type: ignore[no-any-return]

    def time_out_token(self, token_id: str, now: float) -> TokenRecord | None:
        def work(conn: Conn) -> TokenRecord | None:
            conn.execute(Q["time_out_token"], {"id": token_id, "now": now})
            row = conn.execute(Q["get_token"], (token_id,)).fetchone()
            return None if row is None else TokenRecord(**row)

        return self._tx(work)  # type: ignore[no-any-return]

    def upkeep(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum keeps the tables in shape."""

    # -- history ------------------------------------------------------------------------------
    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [AttemptRecord(**r) for r in self._all(Q["list_attempts"], (run_id,))]

    def list_events(self, run_id: str) -> list[EventRecord]:
        return [EventRecord(**r) for r in self._all(Q["list_events"], (run_id,))]

    def reset_once_steps(self, run_id: str) -> list[str]:
        return [r["key"] for r in self._all(Q["reset_once_steps"], (run_id,))]

    # -- schedules (statements in postgres/schedules.py) --------------------------------------
    def save_schedule(self, schedule: ScheduleRecord) -> tuple[ScheduleRecord, bool]:
        return self._run(lambda c: pg_schedules.save(c, schedule))  # type: ignore[no-any-return]

    def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return self._run(lambda c: pg_schedules.get(c, schedule_id))  # type: ignore[no-any-return]

    def list_schedules(self) -> list[ScheduleRecord]:
        return self._run(pg_schedules.list_all)  # type: ignore[no-any-return]

    def delete_schedule(self, schedule_id: str) -> bool:
        return bool(self._run(lambda c: pg_schedules.delete(c, schedule_id)))

    def set_schedule_active(self, schedule_id: str, active: bool, next_run_at: float | None,
                            now: float) -> ScheduleRecord | None:
        return self._run(  # type: ignore[no-any-return]
            lambda c: pg_schedules.set_active(c, schedule_id, active, next_run_at, now))

    def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]:
        return self._run(lambda c: pg_schedules.due(c, now, limit))  # type: ignore[no-any-return]

    def fire_schedule(self, claim: SlotClaim) -> bool:
        def work(conn: Conn) -> bool:
            if not pg_schedules.claim_slot(conn, claim):
                return False
            if claim.run is not None:  # its NOTIFY is delivered at commit
                conn.execute(Q["add_run"], self._add_params(claim.run, claim.now))
            return True

        return bool(self._tx(work))

    def retire_declared(self, keep: list[str], now: float) -> list[str]:
        return self._run(  # type: ignore[no-any-return]
            lambda c: pg_schedules.retire_declared(c, keep, now))

    # -- the HTTP server (statements in postgres/server.py) -----------------------------------
    def _db(self) -> Connections:
        if not self._ready:
            self.migrate()
        return self.db

    def create_api_key(self, key: ApiKeyRecord) -> None:
        pg_server.create_api_key(self._db(), key)

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return pg_server.find_api_key(self._db(), key_hash)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        return pg_server.list_api_keys(self._db())

    def revoke_api_key(self, key_id: str, now: float) -> ApiKeyRecord | None:
        return pg_server.revoke_api_key(self._db(), key_id, now)

    def touch_api_key(self, key_id: str, now: float) -> None:
        pg_server.touch_api_key(self._db(), key_id, now)

    def ensure_setting(self, name: str, value: str) -> str:
        return pg_server.ensure_setting(self._db(), name, value)

    def create_batch(self, batch: BatchRecord) -> tuple[BatchRecord, bool]:
        return pg_server.create_batch(self._db(), batch)

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        return pg_server.get_batch(self._db(), batch_id)

    def add_batch_runs(self, batch_id: str, items: list[tuple[int, NewRun]],
                       now: float) -> list[tuple[int, RunRecord, bool]]:
        """Created runs wake the workers at commit (NOTIFYs inside `_create_all`)."""
        return pg_server.add_batch_runs(self._db(), self._create_all, batch_id, items, now)

    def batch_run_ids(self, batch_id: str) -> list[str]:
        return pg_server.batch_run_ids(self._db(), batch_id)

    def batch_of(self, run_id: str) -> str | None:
        return pg_server.batch_of(self._db(), run_id)

    def get_reply(self, key: str) -> StoredReply | None:
        return pg_server.get_reply(self._db(), key)

    def save_reply(self, reply: StoredReply) -> StoredReply:
        return pg_server.save_reply(self._db(), reply)

    def prune_replies(self, before: float) -> int:
        return pg_server.prune_replies(self._db(), before)

    def put_packet(self, path: str, data: bytes, now: float) -> None:
        pg_server.put_packet(self._db(), path, data, now)

    def get_packet(self, path: str) -> bytes | None:
        return pg_server.get_packet(self._db(), path)

    def add_tags(self, run_id: str, tags: list[str], now: float) -> RunRecord | None:
        return pg_server.add_tags(self._db(), Q["insert_tag"], run_id, tags, now)

    def set_metadata(self, run_id: str, metadata: str, now: float) -> RunRecord | None:
        return pg_server.set_metadata(self._db(), run_id, metadata, now)

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        return pg_server.queue_stats(self._db())
