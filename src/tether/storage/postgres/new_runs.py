"""New runs in PostgreSQL (a part of PostgresStorage): triggered runs, with idempotency keys
and debouncing; children stored with the step that made them; forks. A run stored wakes the
workers with a NOTIFY inside the statement or transaction (sent at commit)."""

from __future__ import annotations

import json
from typing import Any

from tether.errors import LeaseLost
from tether.storage.flow import admit, canceled_wakes, created_runs, queue_settings
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.postgres.arrays import array_literal
from tether.storage.postgres.offers import OfferWatch
from tether.storage.records import (
    Fork,
    Lease,
    NewRun,
    RunRecord,
    StepRecord,
    key_holds,
    new_record,
)
from tether.wakeup import READY, WORKERS


def _wake(runs: list[NewRun], now: float) -> str:
    """The workers' message for new runs: READY when every one can start now."""
    ready = all(new.status == "QUEUED" and new.available_at <= now for new in runs)
    return READY if ready else "runs"


def _tags_json(tags: list[str]) -> str:
    return json.dumps(tags) if tags else "[]"


class NewRuns(PgAccess):
    """Storing new runs: create_runs, create_child_runs, create_fork."""

    _flow_queues: set[str]  # queues a gated single trigger found with flow settings
    _offers: OfferWatch

    def create_runs(self, runs: list[NewRun], now: float) -> list[tuple[RunRecord, bool]]:
        if len(runs) == 1 and not runs[0].idempotency_key and not runs[0].debounce_key:
            # one statement, one round trip, on the kept connection when free (no pool checkout;
            # the insert's plan is the same generic or not)
            new = runs[0]
            if new.queue not in self._flow_queues:
                tags = _tags_json(new.tags)
                params = self._add_params(new, now, tags)
                sql = self._offers.statement(params["wake"] == READY)
                row = self._run(lambda conn: conn.execute(sql, params).fetchone(), True)
                if row is not None:
                    self._offers.seen(row.get("took", False))
                    return [(new_record(new, tags, 0, now), True)]
                # none stored: its queue has flow settings (or an earlier try stored it); its
                # next triggers take the transaction at once
                self._flow_queues.add(new.queue)
        return self._tx(lambda conn: self._create_all(conn, runs, now))  # type: ignore[no-any-return]

    def _create_all(self, conn: Conn, runs: list[NewRun], now: float
                    ) -> list[tuple[RunRecord, bool]]:
        # the queues with a length limit or cancel_newest, locked first (storage/flow.py)
        settings = queue_settings(conn, "%s", [new.queue for new in runs], lock=True)
        out = self._store_all(conn, runs, now)
        admit(conn, "%s", settings, created_runs(runs, out), now)
        self._notify(conn, canceled_wakes(out))  # sent at commit
        return out

    def _store_all(self, conn: Conn, runs: list[NewRun], now: float
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
            for key, output in fork.outputs:
                conn.execute("UPDATE steps SET output = %s WHERE run_id = %s AND key = %s",
                             (output, fork.run.id, key))
            conn.execute(Q["insert_event"], fork.event(now))
            return copied

        copied: int = self._tx(work)
        return new_record(fork.run, _tags_json(fork.run.tags), 0, now), copied

    def _add_params(self, new: NewRun, now: float, tags: str | None = None) -> dict[str, Any]:
        """A run without an idempotency key: one statement that also stores its tags and wakes
        the workers (an id conflict can only be this run, stored by a try whose answer was lost).
        `tags`: its tags as JSON, when the caller has them already."""
        params = new.__dict__.copy()
        params["tags"] = _tags_json(new.tags) if tags is None else tags
        params["now"] = now
        params["tag_list"] = array_literal(new.tags) if new.tags else "{}"
        params["channel"] = self._channel(WORKERS)
        params["wake"] = READY if new.status == "QUEUED" and new.available_at <= now else "runs"
        return params

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
