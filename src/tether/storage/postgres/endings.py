"""Claims and endings in PostgreSQL (a part of PostgresStorage): claiming runs (the
tether_claim function; runs held in line with claim_standby), and ending many attempts in one
statement (finish_runs) with the claim for the places they free pipelined behind it: one round
trip, one commit."""

from __future__ import annotations

import json
from typing import Any

from tether.clock import new_id
from tether.storage.offers import Offer
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.postgres.arrays import array_literal
from tether.storage.postgres.offers import FINISH_ONE_OFFER, offer_params
from tether.storage.records import (
    ClaimedRun,
    ClaimRequest,
    Finish,
    Lease,
    RunRecord,
)
from tether.wakeup import WAITERS, WORKERS

STEP_COLUMNS = ("run_id", "key", "name", "kind", "status", "output", "error", "attempt",
                "started_at", "finished_at", "seq")
# finish_runs' array parameters, in the order of the rows _finish_params builds
_RUN_PARAMS = ("run_id", "token", "to", "output", "error", "available_at", "refund", "final",
               "attempt_id", "attempt", "worker_id", "outcome", "reason", "metadata",
               "waiting_for", "heir", "heir_token", "expiry")
_STEP_PARAMS = tuple(f"step_{name}" for name in STEP_COLUMNS)
_LOG_PARAMS = ("log_run_id", "log_at", "log_attempt", "log_level", "log_data")


def _in_claim_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claimed rows in the order tether_claim picked them (priority, then age, then id)."""
    return sorted(rows, key=lambda r: (-r["priority"], r["available_at"], r["id"]))


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


class Endings(PgAccess):
    """The worker's claims, and the commits that end its attempts."""

    def claim_runs(self, worker_id: str, task_ids: list[str], queues: list[str] | None,
                   limit: int, now: float, lease_seconds: float,
                   version: str | None = None,
                   unpinned: list[str] | None = None) -> list[ClaimedRun]:
        if limit <= 0 or not task_ids:
            return []
        req = ClaimRequest(worker_id, task_ids, queues, limit, now, lease_seconds,
                           version=version, unpinned=unpinned or [])
        return self._run(lambda conn: self._claim(conn, req), True)  # type: ignore[no-any-return]

    def _claim(self, conn: Conn, req: ClaimRequest) -> list[ClaimedRun]:
        """One statement (the plpgsql function): its own transaction when autocommitted."""
        token = new_id("lease")
        rows = conn.execute(Q["claim"], self._claim_params(req, token, True)).fetchall()
        return [_claimed(row, token, req.worker_id) for row in _in_claim_order(rows)]

    @staticmethod
    def _claim_params(req: ClaimRequest, token: str, relaxed: bool) -> dict[str, Any]:
        """`relaxed`: the claim commits on its own, without waiting for the WAL flush (never
        when it shares a transaction with writes that must be durable)."""
        return {"worker": req.worker_id, "tasks": array_literal(req.task_ids),
                "queues": None if req.queues is None else array_literal(req.queues),
                "limit": req.limit, "now": req.now, "lease": req.lease_seconds, "token": token,
                "relaxed": relaxed, "version": req.version,
                "unpinned": array_literal(req.unpinned)}

    def next_ready_at(self, task_ids: list[str], queues: list[str] | None,
                      now: float) -> float | None:
        row = self._one(Q["next_ready_at"], {"now": now, "tasks": task_ids})
        return None if row is None else row["at"]

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None,
                        offer: Offer | None = None
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        """Every ending in one statement (runs, slots, attempt rows, metadata, logs, wake-ups),
        and the claim for the places they free in the same transaction: both statements are
        pipelined, so ending a batch and taking the next runs is one round trip and one commit.
        `offer` is made only with a lone plain ending (in its statement); otherwise the worker
        makes it once it waits."""
        request = claim_next if claim_next is not None and (
            claim_next.limit > 0 or claim_next.standby) else None
        if not items and request is None:
            return [], []
        if request is None and len(items) == 1 and items[0].plain():
            # a lone attempt whose end is its transition alone, as each one is when runs come
            # one at a time: a statement without the parts that would find nothing to do
            one = self._one_params(items[0], now)
            sql = Q["finish_one"]
            if offer is not None:  # (in the same statement and commit)
                one.update(offer_params(offer, "offer_token"))
                sql = FINISH_ONE_OFFER
            rows = self._run(lambda conn: conn.execute(sql, one).fetchall(), True)
            if rows and rows[0]["frees"]:
                self.bus.publish(WORKERS, "slot")
            return [_ended(rows[0]) if rows else None], []
        finish_params = self._finish_params(items, now) if items else None
        # attempts whose ends are their transitions alone: a statement without the parts that
        # would find nothing to do (it reads only the parameters it needs)
        ending = Q["finish_plain"] if all(item.plain() for item in items) else Q["finish_runs"]
        token = new_id("lease")

        def work(conn: Conn) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                      list[dict[str, Any]]]:
            if finish_params and request is None and self.db.generic(conn):
                # one statement, its own transaction: no pipeline to enter and leave (a lone
                # run's end, as each one is when runs come one at a time)
                return conn.execute(ending, finish_params).fetchall(), [], []
            # Pipelined on an autocommit connection: both statements are sent at once and run
            # in one implicit transaction, committed (durably: the claim is not relaxed here)
            # at the pipeline's single Sync.
            with conn.pipeline():
                if not self.db.generic(conn):  # (set once for all on that connection)
                    conn.execute(Q["generic_plans"])
                ended = conn.execute(ending, finish_params) if finish_params else None
                taken = conn.execute(Q["claim"], self._claim_params(request, token, False)
                                     ) if request and request.limit > 0 else None
                lined = conn.execute(Q["claim_standby"], self._standby_params(request, token)
                                     ) if request and request.standby else None
            return ((ended.fetchall() if ended else []), (taken.fetchall() if taken else []),
                    (lined.fetchall() if lined else []))

        rows, claim_rows, standby_rows = self._run(work, True)
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

    def _one_params(self, item: Finish, now: float) -> dict[str, Any]:
        """finish_one's parameters (`item.plain()`)."""
        lease, t = item.lease, item.transition
        return {"run_id": lease.run_id, "token": lease.token, "to": str(t.to),
                "output": t.output, "error": t.error, "available_at": t.available_at,
                "refund": int(t.refund_attempt), "final": t.is_final,
                "attempt_id": new_id("attempt"), "attempt": lease.attempt,
                "worker_id": lease.worker_id, "outcome": t.attempt_outcome, "reason": t.reason,
                "expiry": item.expired_before, "now": now, "waiters": self._channel(WAITERS)}

    def _finish_params(self, items: list[Finish], now: float) -> dict[str, Any]:
        """finish_runs' parameters: one array per column, built from a row per ending (and per
        step and log line); an empty array is the literal `{}`, without building it."""
        runs, steps, logs = [], [], []
        for item in items:
            lease, t, flush, heir = item.lease, item.transition, item.flush, item.successor
            runs.append((
                lease.run_id, lease.token, str(t.to), t.output, t.error, t.available_at,
                int(t.refund_attempt), t.is_final, new_id("attempt"), lease.attempt,
                lease.worker_id, t.attempt_outcome, t.reason, flush.metadata if flush else None,
                t.waiting_for, heir.run_id if heir else None, heir.token if heir else None,
                item.expired_before))
            if item.step is not None:
                step = item.step.__dict__
                steps.append(tuple(lease.run_id if name == "run_id" else step[name]
                                   for name in STEP_COLUMNS))
            for log in flush.logs if flush else []:
                logs.append((lease.run_id, log.at, log.attempt, log.level,
                             json.dumps({"message": log.message, "logger": log.logger})))
        params: dict[str, Any] = {}
        for names, rows in ((_RUN_PARAMS, runs), (_STEP_PARAMS, steps), (_LOG_PARAMS, logs)):
            if rows:
                params.update(zip(names, map(array_literal, zip(*rows, strict=True)), strict=True))
            else:
                params.update(dict.fromkeys(names, "{}"))
        params.update(now=now, waiters=self._channel(WAITERS), workers=self._channel(WORKERS))
        return params
