"""Runs read and moved in SQLite (a part of SQLiteStorage): one run, many, a filtered page; a
transition made outside an attempt (cancel, retry, reschedule, ...); the run's attempts and
events."""

from __future__ import annotations

from collections.abc import Sequence

from tether.clock import new_id
from tether.engine.states import Transition, sources
from tether.models import RunStatus
from tether.storage.records import (
    AttemptRecord,
    EventRecord,
    RunFilter,
    RunRecord,
    status_event,
)
from tether.storage.run_filter import list_runs_sql
from tether.storage.sqlite.access import Q, SQLiteAccess
from tether.storage.sqlite.rows import run_record, run_records
from tether.wakeup import after_transition


def _in_list(values: Sequence[str]) -> tuple[str, list[object]]:
    return f"IN ({','.join('?' * len(values))})", list(values)


class RunReads(SQLiteAccess):
    """Reading runs and their history; transitions outside an attempt."""

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
        sql, params, newer = list_runs_sql(flt, "?", _in_list)
        records = [RunRecord.from_mapping(r) for r in self._read(sql, params)]
        return records[::-1] if newer else records  # the runs just newer came nearest first

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

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [AttemptRecord(**dict(r)) for r in self._read(Q["list_attempts"], (run_id,))]

    def list_events(self, run_id: str) -> list[EventRecord]:
        return [EventRecord(**dict(r)) for r in self._read(Q["list_events"], (run_id,))]

    def reset_once_steps(self, run_id: str) -> list[str]:
        self._conn()
        with self.db.write() as conn:
            return [r[0] for r in conn.execute(Q["reset_once_steps"], (run_id,)).fetchall()]
