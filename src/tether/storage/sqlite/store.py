"""The SQLite backend: an embedded file, nothing to install. Many processes on one machine may
share it; SQLite's write lock serializes their writes, WAL mode lets reads run alongside.
The store's methods are grouped by job: access.py (the base: reads, write transactions,
migrations), new_runs.py, runs.py, endings.py (claims, ending attempts), waits.py (waits and
tokens), schedules.py and server.py (statements its methods call)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tether.clock import Clock
from tether.errors import LeaseLost
from tether.storage.flow import canceled_wakes
from tether.storage.offers import Offer
from tether.storage.pipeline import StepPipeline
from tether.storage.queue_records import QueueDepth, QueueRecord, queue_rows
from tether.storage.records import (
    Flush,
    Lease,
    NewRun,
    RunRecord,
    StepRecord,
    TaskRecord,
    WorkerBeat,
    WorkerRecord,
)
from tether.storage.schedules import ScheduleRecord, SlotClaim
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply
from tether.storage.sqlite import schedules as sqlite_schedules
from tether.storage.sqlite import server as sqlite_server
from tether.storage.sqlite.access import Q, SQLiteAccess
from tether.storage.sqlite.alerts import AlertParts
from tether.storage.sqlite.connection import Connections
from tether.storage.sqlite.endings import Endings
from tether.storage.sqlite.new_runs import NewRuns
from tether.storage.sqlite.purge import PurgeParts
from tether.storage.sqlite.queue_keys import QueueKeys
from tether.storage.sqlite.rates import RateParts
from tether.storage.sqlite.runs import RunReads
from tether.storage.sqlite.waits import Waits
from tether.wakeup import WORKERS, Bus, local_bus


class SQLiteStorage(NewRuns, RunReads, Endings, Waits, AlertParts, PurgeParts, QueueKeys, RateParts,
                    SQLiteAccess):
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL",
                 busy_timeout: float = 60.0, create_folder: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self.db = Connections(self.path, synchronous, busy_timeout, create_folder=create_folder)
        self.bus: Bus = local_bus(str(self.path))
        self.io_bound = False  # microseconds per call: the worker's loop calls it directly
        self.pipeline: StepPipeline | None = None  # each write is microseconds: none needed
        self.offers = False  # a claim costs microseconds here: workers make no offers
        self.clock: Clock | None = None
        self._ready = False
        self._limited_cache: frozenset[str] = frozenset()
        self._limited_at = -1e9

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
            _upsert_queues(conn, queues, now)

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._read(Q["get_task"], (task_id,)).fetchone()
        return None if row is None else TaskRecord(**dict(row))

    def list_tasks(self) -> list[TaskRecord]:
        return [TaskRecord(**dict(r)) for r in self._read(Q["list_tasks"])]

    def ensure_queues(self, queues: list[QueueRecord], now: float) -> None:
        self._conn()
        with self.db.write() as conn:
            _upsert_queues(conn, queues, now)

    def list_queues(self) -> list[QueueRecord]:
        return [QueueRecord(r[0], r[1], bool(r[2]), r[3], r[4], None if r[5] is None else int(r[5]),
                            r[6], r[7], max_queued=r[8], on_key_limit=r[9])
                for r in self._read(Q["list_queues"])]

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool:
        return self._write_one(Q["set_queue_paused"], (int(paused), now, name)) == 1

    def register_worker(self, worker: WorkerRecord) -> None:
        self._write_one(Q["register_worker"], (
            worker.id, worker.hostname, worker.pid, worker.queues, worker.concurrency,
            worker.started_at, worker.last_seen_at, worker.version, worker.tasks))

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

    def workers_seen(self, since: float | None, limit: int) -> list[WorkerRecord]:
        rows = self._read(Q["workers_seen"], (since if since is not None else 0.0, limit))
        return [WorkerRecord(**dict(r)) for r in rows]

    def mark_stalled(self, worker_id: str, stalled_since: float | None, stalls: int) -> None:
        self._write_one(Q["mark_stalled"], (stalled_since, stalls, worker_id))

    def ready_since(self, before: float) -> list[tuple[str, str, float]]:
        return [(r[0], r[1], r[2]) for r in self._read(Q["ready_since"], (before,))]

    # -- the worker's side (claims and endings in endings.py) ---------------------------------
    def load_steps(self, run_id: str) -> dict[str, StepRecord]:
        rows = self._read(Q["load_steps"], (run_id,))
        return {r[0]: StepRecord(*r) for r in rows}

    def load_steps_many(self, run_ids: list[str]) -> dict[str, dict[str, StepRecord]]:
        found: dict[str, dict[str, StepRecord]] = {}
        for r in self._read(Q["load_steps_many"], (json.dumps(run_ids),)):
            found.setdefault(r[0], {})[r[1]] = StepRecord(*r[1:])
        return found

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

    def make_offer(self, offer: Offer, previous: list[str] | None = None) -> list[RunRecord]:
        raise NotImplementedError("offers are made to PostgreSQL only (storage/offers.py)")

    def withdraw_offer(self, worker_id: str, tokens: list[str]) -> list[RunRecord]:
        return []

    def renew_leases(self, worker_id: str, run_ids: list[str], now: float,
                     lease_seconds: float, beat: WorkerBeat | None = None) -> set[str]:
        self._conn()
        with self.db.write() as conn:
            held: set[str] = set()
            if run_ids:
                sql = f"{Q['renew_leases']} ({','.join('?' * len(run_ids))}) RETURNING id"
                held = {r[0] for r in conn.execute(sql, [now + lease_seconds, worker_id, *run_ids])}
            if beat is None:
                conn.execute(Q["touch_worker"], (now, worker_id))
            else:
                conn.execute(Q["beat_worker"], (now, beat.running, beat.last_claim_at,
                                                beat.stalled_since, beat.stalls, worker_id))
        return held

    def expired_leases(self, now: float, dead_workers: list[str]) -> list[RunRecord]:
        rows = list(self._read(Q["expired_leases"], (now,)))
        if dead_workers:
            rows += self._read(
                f"SELECT * FROM runs WHERE status = 'EXECUTING' AND lease_expires_at >= ? AND "
                f"worker_id IN ({','.join('?' * len(dead_workers))})", [now, *dead_workers])
        return [RunRecord.from_mapping(r) for r in rows]

    def upkeep(self) -> None:
        """Copy the write-ahead log into the database file (a passive checkpoint: it never
        blocks writers), so that it stays small without commits paying for it."""
        self._read("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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
        self._send(canceled_wakes([(record, created) for _, record, created in out]))
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

    def queue_depths(self) -> list[QueueDepth]:
        return sqlite_server.queue_depths(self._db())


def _upsert_queues(conn: sqlite3.Connection, queues: list[QueueRecord], now: float) -> None:
    """Store each queue's settings (the newest registration wins); a queue whose settings
    changed starts its rate buckets afresh (a bucket filled under an old, slower limit would
    hold runs back for the old limit's time)."""
    for row in queue_rows(queues, now):
        if conn.execute(Q["upsert_queue"], row).rowcount:
            conn.execute("DELETE FROM rate_buckets WHERE name = ?", (f"queue:{row[0]}",))
