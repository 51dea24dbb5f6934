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
    WaitPart,
    gather_due,
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
                gathers = [r["waiting_for"] for r in waits
                           if (r["waiting_for"] or "").startswith("gather")]
                if gathers:  # (runs that wait for one thing never have parts)
                    conn.execute(Q["drop_gathers"], (gathers,))
                conn.cursor().executemany(Q["insert_event"], [
                    status_event(r["id"], now, r["attempts"], "QUEUED", "wait over", "WAITING")
                    for r in waits])
            if ids or waits:
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            return len(ids) + len(waits)

        return self._tx(work)  # type: ignore[no-any-return]

    def resolve_waits(self, now: float) -> int:
        # the usual answer, nothing for either kind of wait: one plain read
        found = self._one(f"SELECT EXISTS ({Q['resolved_waits']}) AS waits, "
                          f"EXISTS ({Q['resolved_parts']}) AS parts")
        resumed = self._resolve_parts(now) if found is not None and found["parts"] else 0
        if found is None or not found["waits"]:
            return resumed

        def work(conn: Conn) -> int:
            ids = [r["id"] for r in conn.execute(
                Q["resolved_waits"] + " FOR UPDATE SKIP LOCKED").fetchall()]
            for run_id in ids:
                self._resume(conn, run_id, None, now, "what it waited for is done")
            if ids:
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            return len(ids)

        return resumed + self._tx(work)  # type: ignore[no-any-return]

    # -- gathers: several waits at once (migration 0021) ----------------------------------------
    def park_gather(self, lease: Lease, wait: str, parts: list[WaitPart],
                    steps: list[StepRecord], now: float) -> float | None:
        def work(conn: Conn) -> float | None:
            # its tokens first (as a completion locks its token before the runs): each part is
            # then read as over, or its completion sees it stored (see lock_part_tokens)
            conn.execute(Q["lock_part_tokens"], ([part.part for part in parts],))
            if conn.execute(Q["check_lease"], (lease.run_id, lease.token)).fetchone() is None:
                raise LeaseLost(lease.run_id)
            for step in steps:
                conn.execute(Q["save_step"], self._step_params(lease, step))
            conn.execute(Q["drop_run_parts"], (lease.run_id,))
            stored = [part for part in parts  # (a part over already is not stored)
                      if conn.execute(Q["insert_part"], {
                          "wait": wait, "part": part.part, "run_id": lease.run_id,
                          "due_at": part.due_at}).rowcount == 1]
            return gather_due(stored)

        return self._tx(work)  # type: ignore[no-any-return]

    def gather_waits_for(self, part: str) -> bool:
        row = self._one(Q["gather_waits_for"], (part,))
        return bool(row is not None and row["exists"])

    def _settle_parts(self, conn: Conn, part: str, now: float) -> list[str]:
        """`part` is over: delete it from the gathers and queue those gathers' runs that have no
        undue part left (the others wake at their latest due part). The runs queued.

        Each run is locked first, and what follows reads afresh: a run that is executing and
        not on this gather may be about to park on it (its park and these parts were stored,
        the commit that moves it to WAITING is under way, computed from what it saw before):
        its part is left, and the finish's re-check (_settle_parked) settles it once the run
        parked (resolve_waits, if that failed)."""
        resumed = []
        for row in conn.execute(Q["lock_part_runs"], (part,)).fetchall():
            wait, run_id = row["wait"], row["id"]
            if row["status"] == "EXECUTING" and row["waiting_for"] != wait:
                continue  # may be about to park on it: left for its finish's re-check
            conn.execute(Q["take_part"], (wait, part))  # (or stale: the run left this gather)
            if row["status"] != "WAITING" or row["waiting_for"] != wait:
                continue
            settled = conn.execute(Q["settle_gather"], {"wait": wait, "id": run_id,
                                                        "now": now}).fetchone()
            if settled is not None and settled["available_at"] <= now and self._resume(
                    conn, run_id, wait, now, "what it waited for is done"):
                resumed.append(run_id)
        return resumed

    def _settle_parked(self, parked: list[tuple[str, str, float]], now: float) -> int:
        """Gathers a finish has just parked and committed (each: run id, gather id, the time
        it wakes), settled as SQLite's finish does in its own commit (finish_runs leaves
        gathers to this: its text is at psycopg's cache limit). A gather with no part left
        undue (none was stored: all over before the park) is queued now. A part whose token
        was completed while the run was still executing was left by the completion (the run
        was not parked yet), and the finish could not see it: its statement read the token
        before that commit, then waited for the run's row the completion held. Both are read
        afresh here, after the finish's commit; a completion committing later finds the run
        parked and settles it itself. The runs queued."""
        due = sorted((run_id, wait) for run_id, wait, wakes in parked if wakes <= now)
        waits = [wait for _, wait, _ in parked]
        resumed = 0
        if due:
            def work(conn: Conn) -> int:
                queued = [run_id for run_id, wait in due
                          if self._resume(conn, run_id, wait, now, "what it waited for is done")]
                if queued:
                    conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
                return len(queued)

            resumed = self._tx(work)
        if self._all(Q["resolved_parts_of"], (waits,)):  # (the usual answer: none)
            resumed += self._resolve_parts(now, waits)
        return resumed

    def _resolve_parts(self, now: float, waits: list[str] | None = None) -> int:
        """The safety net for gathers: parts whose event happened but are still stored (a
        gather that parked at the very moment its children ended, or whose finish's re-check,
        _settle_parked, failed), of all gathers or of `waits` only."""
        def work(conn: Conn) -> int:
            found = conn.execute(Q["resolved_parts"]) if waits is None else conn.execute(
                Q["resolved_parts_of"], (waits,))
            parts = [r["part"] for r in found.fetchall()]
            # all their runs locked at once, in id order (as the commits that end attempts lock
            # theirs): never a lock cycle with one of them
            conn.execute(Q["lock_parts_runs"], (parts,))
            resumed = [run_id for part in parts for run_id in self._settle_parts(conn, part, now)]
            if resumed:
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
            return len(resumed)

        return self._tx(work)  # type: ignore[no-any-return]

    def _resume(self, conn: Conn, run_id: str, waiting_for: str | None, now: float,
                reason: str) -> bool:
        row = conn.execute(Q["resume_run"], {"id": run_id, "waiting_for": waiting_for,
                                             "now": now}).fetchone()
        if row is not None:
            conn.execute(Q["insert_event"], status_event(run_id, now, row["attempts"], "QUEUED",
                                                         reason, "WAITING"))
            if waiting_for is not None and waiting_for.startswith("gather"):
                conn.execute(Q["drop_gathers"], ([waiting_for],))
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
        return self._tx(  # type: ignore[no-any-return]
            lambda conn: self._complete_token(conn, token_id, output, now))

    def _complete_token(self, conn: Conn, token_id: str, output: str, now: float
                        ) -> tuple[TokenRecord | None, bool]:
        """complete_token's work, in the caller's transaction."""
        changed = conn.execute(Q["complete_token"], {"id": token_id, "output": output,
                                                     "now": now}).rowcount == 1
        if changed:
            waiters = conn.execute(Q["token_waiters"], (token_id,)).fetchall()
            resumed = [self._resume(conn, r["id"], token_id, now, f"token {token_id} completed")
                       for r in waiters]
            resumed += [bool(self._settle_parts(conn, token_id, now))]  # gathers waiting for it
            if any(resumed):
                conn.execute(Q["notify"], (self._channel(WORKERS), "runs"))
        row = conn.execute(Q["get_token"], (token_id,)).fetchone()
        return (None if row is None else TokenRecord(**row)), changed

    def time_out_token(self, token_id: str, now: float) -> TokenRecord | None:
        def work(conn: Conn) -> TokenRecord | None:
            conn.execute(Q["time_out_token"], {"id": token_id, "now": now})
            row = conn.execute(Q["get_token"], (token_id,)).fetchone()
            return None if row is None else TokenRecord(**row)

        return self._tx(work)  # type: ignore[no-any-return]
