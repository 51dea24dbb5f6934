"""New runs in SQLite (a part of SQLiteStorage): triggered runs, with idempotency keys and
debouncing; children stored with the step that made them; forks. The workers are woken after
the commit."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from tether.errors import LeaseLost
from tether.storage.flow import admit, canceled_wakes, created_runs, queue_settings
from tether.storage.records import (
    Fork,
    Lease,
    NewRun,
    RunRecord,
    StepRecord,
    key_holds,
    new_record,
)
from tether.storage.sqlite.access import Q, SQLiteAccess
from tether.wakeup import WORKERS


def _run_values(new: NewRun, now: float, gated: bool = False) -> dict[str, Any]:
    """The parameters of insert_run (`gated`: see there) and debounce_run."""
    return {**new.__dict__, "tags": json.dumps(new.tags) if new.tags else "[]", "now": now,
            "idempotency_active": int(new.idempotency_key is not None), "gated": int(gated)}


class NewRuns(SQLiteAccess):
    """Storing new runs: create_runs, create_child_runs, create_fork."""

    def create_runs(self, runs: list[NewRun], now: float) -> list[tuple[RunRecord, bool]]:
        self._conn()
        if any(new.idempotency_key is not None or new.debounce_key is not None for new in runs):
            with self.db.write() as conn:
                out = self._create_all(conn, runs, now)
        else:  # only inserts: their rows are built before the write lock is taken, and after
            values = [_run_values(new, now, gated=True) for new in runs]
            tags = [(tag, new.id) for new in runs for tag in new.tags]
            out = [(new_record(new, v["tags"], 0, now), True) for new, v in zip(runs, values,
                                                                                strict=True)]
            with self.db.write() as conn:
                # the runs of queues whose settings a trigger must apply are left out here
                if conn.executemany(Q["insert_run"], values).rowcount < len(values):
                    settings = queue_settings(conn, "?", [new.queue for new in runs], lock=False)
                    conn.executemany(Q["insert_run"], [{**v, "gated": 0} for v in values
                                                       if v["queue"] in settings])
                    admit(conn, "?", settings, created_runs(runs, out), now)
                if tags:
                    conn.executemany(Q["insert_tag"], tags)
        if any(created for _, created in out):
            self.bus.publish(WORKERS, "runs")
        self._send(canceled_wakes(out))
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
        self._send(canceled_wakes(out))
        return out

    def create_fork(self, fork: Fork, now: float) -> tuple[RunRecord, int]:
        self._conn()
        with self.db.write() as conn:
            record = self._insert(conn, fork.run, now)
            copied = conn.execute(Q["copy_steps"], (fork.run.id, fork.source_id,
                                                    fork.before_seq)).rowcount
            conn.executemany("UPDATE steps SET output = ? WHERE run_id = ? AND key = ?",
                             [(output, fork.run.id, key) for key, output in fork.outputs])
            conn.execute(Q["insert_event"], fork.event(now))
        self.bus.publish(WORKERS, "runs")
        return record, copied

    def _create_all(self, conn: sqlite3.Connection, runs: list[NewRun],
                    now: float) -> list[tuple[RunRecord, bool]]:
        """Store `runs` within the queues' flow settings (storage/flow.py: max_queued,
        cancel_newest; the write lock serializes them); the caller sends canceled_wakes(out)
        after the commit."""
        settings = queue_settings(conn, "?", [new.queue for new in runs], lock=False)
        out = self._store_all(conn, runs, now)
        admit(conn, "?", settings, created_runs(runs, out), now)
        return out

    def _store_all(self, conn: sqlite3.Connection, runs: list[NewRun],
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
