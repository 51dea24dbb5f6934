"""Waits and tokens in PostgreSQL (a part of PostgresStorage): the housekeeping that queues
due delayed runs and runs whose wait is over, expires runs past their ttl; waitpoint tokens
(create, read, list, complete, time out) and the runs they resume."""

from __future__ import annotations

import json

from tether.engine.states import expired, promoted
from tether.errors import LeaseLost
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.records import (
    Lease,
    StepRecord,
    TokenRecord,
    status_event,
)
from tether.wakeup import WORKERS, after_transition


class Waits(PgAccess):
    """Durable waits ending, and waitpoint tokens."""

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
