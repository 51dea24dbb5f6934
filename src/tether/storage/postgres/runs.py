"""Runs read and moved in PostgreSQL (a part of PostgresStorage): one run, many, a filtered
page; a transition made outside an attempt (cancel, retry, reschedule, ...); the run's attempts
and events."""

from __future__ import annotations

from collections.abc import Sequence

from tether.clock import new_id
from tether.engine.states import Transition, sources
from tether.models import RunStatus
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.records import (
    AttemptRecord,
    EventRecord,
    RunFilter,
    RunRecord,
    status_event,
)
from tether.storage.run_filter import list_runs_sql
from tether.wakeup import after_transition


def _any(values: Sequence[str]) -> tuple[str, list[object]]:
    return "= ANY (%s)", [list(values)]


class RunReads(PgAccess):
    """Reading runs and their history; transitions outside an attempt."""

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._one(Q["get_run"], (run_id,))
        return None if row is None else RunRecord.from_mapping(row)

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        rows = self._all("SELECT * FROM runs WHERE id = ANY (%s)", (run_ids,))
        by_id = {r["id"]: RunRecord.from_mapping(r) for r in rows}
        return [by_id[i] for i in run_ids if i in by_id]

    def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        sql, params, newer = list_runs_sql(flt, "%s", _any)
        records = [RunRecord.from_mapping(r) for r in self._all(sql, params)]
        return records[::-1] if newer else records  # the runs just newer came nearest first

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

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [AttemptRecord(**r) for r in self._all(Q["list_attempts"], (run_id,))]

    def list_events(self, run_id: str) -> list[EventRecord]:
        return [EventRecord(**r) for r in self._all(Q["list_events"], (run_id,))]

    def reset_once_steps(self, run_id: str) -> list[str]:
        return [r["key"] for r in self._all(Q["reset_once_steps"], (run_id,))]
