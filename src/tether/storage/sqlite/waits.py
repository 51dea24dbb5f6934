"""Waits and tokens in SQLite (a part of SQLiteStorage): the housekeeping that queues due
delayed runs and runs whose wait is over, expires runs past their ttl; waitpoint tokens
(create, read, list, complete, time out) and the runs they resume."""

from __future__ import annotations

import json
import sqlite3

from tether.engine.states import expired, promoted
from tether.errors import LeaseLost
from tether.storage.records import (
    Lease,
    StepRecord,
    TokenRecord,
    WaitPart,
    gather_due,
    status_event,
)
from tether.storage.sqlite.access import Q, SQLiteAccess
from tether.wakeup import WORKERS, after_transition


class Waits(SQLiteAccess):
    """Durable waits ending, and waitpoint tokens."""

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
            gathers = [r[2] for r in waits if (r[2] or "").startswith("gather")]
            if gathers:  # (runs that wait for one thing never have parts)
                conn.execute(Q["drop_gathers"], (json.dumps(gathers),))
            conn.executemany(Q["insert_event"], [
                status_event(r[0], now, r[1], "QUEUED", "wait over", "WAITING") for r in waits])
        if rows or waits:
            self.bus.publish(WORKERS, "runs")
        return len(rows) + len(waits)

    def resolve_waits(self, now: float) -> int:
        # the usual answer, nothing for either kind of wait: one read
        waits, parts = self._read(f"SELECT EXISTS ({Q['resolved_waits']}), "
                                  f"EXISTS ({Q['resolved_parts']})").fetchone()
        resumed = self._resolve_parts(now) if parts else 0
        if not waits:
            return resumed
        with self.db.write() as conn:  # checked again under the write lock
            ids = [r[0] for r in conn.execute(Q["resolved_waits"]).fetchall()]
            for run_id in ids:
                self._resume(conn, run_id, None, now, "what it waited for is done")
        if ids:
            self.bus.publish(WORKERS, "runs")
        return len(ids) + resumed

    # -- gathers: several waits at once (migration 0021) ----------------------------------------
    def park_gather(self, lease: Lease, wait: str, parts: list[WaitPart],
                    steps: list[StepRecord], now: float) -> float | None:
        self._conn()
        stored = []
        with self.db.write() as conn:
            if conn.execute(Q["check_lease"], (lease.run_id, lease.token)).fetchone() is None:
                raise LeaseLost(lease.run_id)
            for step in steps:
                conn.execute(Q["save_step"], self._step_params(lease, step))
            conn.execute(Q["drop_run_parts"], (lease.run_id,))
            for part in parts:
                if conn.execute(Q["wait_resolved"], {"w": part.part}).fetchone()[0]:
                    continue  # over already: nothing to wait for
                conn.execute(Q["insert_part"], {"wait": wait, "part": part.part,
                                                "run_id": lease.run_id, "due_at": part.due_at})
                stored.append(part)
        return gather_due(stored)

    def gather_waits_for(self, part: str) -> bool:
        return bool(self._read(Q["gather_waits_for"], (part,)).fetchone()[0])

    def _settle_parts(self, conn: sqlite3.Connection, part: str, now: float) -> list[str]:
        """`part` is over: delete it from every gather and queue the gathers' runs that have no
        undue part left (the others wake at their latest due part). The runs queued."""
        resumed = []
        for wait, run_id in conn.execute(Q["take_parts"], (part,)).fetchall():
            row = conn.execute(Q["settle_gather"], {"wait": wait, "id": run_id, "now": now}
                               ).fetchone()
            if row is not None and row[0] <= now and self._resume(
                    conn, run_id, wait, now, "what it waited for is done"):
                resumed.append(run_id)
        return resumed

    def _resolve_parts(self, now: float) -> int:
        """The safety net for gathers: parts whose event happened but are still stored."""
        with self.db.write() as conn:
            resumed = [run_id for (part,) in conn.execute(Q["resolved_parts"]).fetchall()
                       for run_id in self._settle_parts(conn, part, now)]
        if resumed:
            self.bus.publish(WORKERS, "runs")
        return len(resumed)

    def _resume(self, conn: sqlite3.Connection, run_id: str, waiting_for: str | None, now: float,
                reason: str) -> bool:
        row = conn.execute(Q["resume_run"], {"id": run_id, "waiting_for": waiting_for,
                                             "now": now}).fetchone()
        if row is not None:
            conn.execute(Q["insert_event"], status_event(run_id, now, row[1], "QUEUED", reason,
                                                         "WAITING"))
            if waiting_for is not None and waiting_for.startswith("gather"):
                conn.execute(Q["drop_gathers"], (json.dumps([waiting_for]),))
        return row is not None

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
                resumed += self._settle_parts(conn, token_id, now)  # gathers waiting for it
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
