"""The PostgreSQL backend: any number of workers on any number of machines, one database.
PostgreSQL is the coordinator: claims lock rows with SKIP LOCKED, queue limits are slot rows,
wake-ups are LISTEN/NOTIFY. The store's methods are grouped by job: access.py (the base:
connections, migrations), new_runs.py, runs.py, endings.py (claims, ending attempts), waits.py
(waits and tokens), schedules.py and server.py (statements its methods call)."""

from __future__ import annotations

import logging
import time

import psycopg

from tether.clock import Clock
from tether.errors import LeaseLost, StorageUnavailable
from tether.storage.offers import Offer
from tether.storage.pipeline import StepPipeline
from tether.storage.postgres import schedules as pg_schedules
from tether.storage.postgres import server as pg_server
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.postgres.alerts import AlertParts
from tether.storage.postgres.bus import PgBus
from tether.storage.postgres.connection import Connections
from tether.storage.postgres.endings import Endings
from tether.storage.postgres.new_runs import NewRuns
from tether.storage.postgres.offers import OfferParts, OfferWatch
from tether.storage.postgres.purge import PurgeParts
from tether.storage.postgres.queue_keys import QueueKeys
from tether.storage.postgres.rates import RateParts
from tether.storage.postgres.runs import RunReads
from tether.storage.postgres.step_writer import StepWriter, write_flush
from tether.storage.postgres.waits import Waits
from tether.storage.queue_records import QueueDepth, QueueRecord, queue_rows
from tether.storage.records import (
    ClaimedRun,
    ClaimRequest,
    Finish,
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
from tether.wakeup import Bus

log = logging.getLogger("tether.storage")


class PostgresStorage(NewRuns, RunReads, Endings, Waits, AlertParts, PurgeParts, QueueKeys, RateParts,
                      OfferParts, PgAccess):
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
        self._flow_queues: set[str] = set()  # (new_runs.py)
        self._offers = OfferWatch()  # (offers.py)

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
                cur.executemany(Q["upsert_queue"], queue_rows(queues, now))

        self._tx(work)

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one(Q["get_task"], (task_id,))
        return None if row is None else TaskRecord(**row)

    def list_tasks(self) -> list[TaskRecord]:
        return [TaskRecord(**r) for r in self._all(Q["list_tasks"])]

    def ensure_queues(self, queues: list[QueueRecord], now: float) -> None:
        self._tx(lambda c: c.cursor().executemany(
            Q["upsert_queue"], queue_rows(queues, now)))

    def list_queues(self) -> list[QueueRecord]:
        return [QueueRecord(r["name"], r["concurrency"], bool(r["paused"]), r["rate_limit"],
                            r["rate_period"], None if r["rate_burst"] is None
                            else int(r["rate_burst"]), r["rate_scope"], r["total_concurrency"],
                            max_queued=r["max_queued"], on_key_limit=r["on_key_limit"])
                for r in self._all(Q["list_queues"])]

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool:
        count = self._run(lambda c: c.execute(Q["set_queue_paused"], (int(paused), now, name)).rowcount)
        return bool(count == 1)

    def register_worker(self, worker: WorkerRecord) -> None:
        self._run(lambda c: c.execute(Q["register_worker"], (
            worker.id, worker.hostname, worker.pid, worker.queues, worker.concurrency,
            worker.started_at, worker.last_seen_at, worker.version, worker.tasks)))

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

    def workers_seen(self, since: float | None, limit: int) -> list[WorkerRecord]:
        rows = self._all(Q["workers_seen"], (since if since is not None else 0.0, limit))
        return [WorkerRecord(**r) for r in rows]

    def mark_stalled(self, worker_id: str, stalled_since: float | None, stalls: int) -> None:
        self._run(lambda c: c.execute(Q["mark_stalled"], (stalled_since, stalls, worker_id)))

    def ready_since(self, before: float) -> list[tuple[str, str, float]]:
        return [(r["task_id"], r["queue"], r["oldest"])
                for r in self._all(Q["ready_since"], (before,))]

    # -- the worker's side (claims and endings in endings.py) ---------------------------------
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

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None,
                        offer: Offer | None = None
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        """Endings.finish_attempts, then the gathers it parked settled (waits.py's
        _settle_parked: all over before the park, or a token completed while the run was
        parking). The finish's commit stands whatever that meets: a failure is left to
        housekeeping (promote_delayed, resolve_waits)."""
        finished, claimed = super().finish_attempts(items, now, claim_next, offer)
        parked = [(r.id, r.waiting_for, r.available_at) for r in finished
                  if r is not None and r.status == "WAITING" and r.waiting_for is not None
                  and r.waiting_for.startswith("gather")]
        if parked:
            try:
                self._settle_parked(parked, now)
            except (StorageUnavailable, psycopg.Error) as exc:
                log.warning("settling %d gathers just parked failed (%s): housekeeping settles "
                            "them", len(parked), exc)
        return finished, claimed

    def renew_leases(self, worker_id: str, run_ids: list[str], now: float,
                     lease_seconds: float, beat: WorkerBeat | None = None) -> set[str]:
        params: dict[str, object] = {"until": now + lease_seconds, "worker_id": worker_id,
                                     "now": now, "run_ids": run_ids}
        if beat is not None:
            params.update(running=beat.running, last_claim_at=beat.last_claim_at,
                          stalled_since=beat.stalled_since, stalls=beat.stalls)
        rows = self._all(Q["renew_leases" if beat is None else "renew_leases_beat"], params)
        return {r["id"] for r in rows}

    def expired_leases(self, now: float, dead_workers: list[str]) -> list[RunRecord]:
        rows = self._all(Q["expired_leases"], (now, dead_workers))
        return [RunRecord.from_mapping(r) for r in rows]

    def upkeep(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum keeps the tables in shape."""

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

    def queue_depths(self) -> list[QueueDepth]:
        return pg_server.queue_depths(self._db())
