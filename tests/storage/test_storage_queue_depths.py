"""Storage contract: queue depths for the metrics (unfinished runs per queue and status, and the
oldest ready run), and that their query reads only unfinished runs (its plan on each backend)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from contract_helpers import NOW, AddRun, Claim

from tether.engine import states
from tether.storage.base import Storage
from tether.storage.queue_records import QueueDepth
from tether.storage.records import Finish


def test_queue_depths_count_each_unfinished_status_per_queue(storage: Storage, add_run: AddRun,
                                                             claim: Claim) -> None:
    assert storage.queue_depths() == []
    first = add_run(1, queue="q", now=NOW - 30)
    add_run(2, queue="q", now=NOW - 10)
    add_run(3, queue="q", now=NOW - 5)
    add_run("later", queue="q", delay=60)
    add_run("other", queue="q2", now=NOW - 2)
    canceled = add_run("canceled", queue="q3")
    assert storage.transition(canceled.id, states.canceled("test"), NOW) is not None
    # the oldest run of "q" executes, the next one parks (WAITING); one of q2 completes
    [running] = claim(limit=1, queues=["q"])
    assert running.record.id == first.id
    [parking] = claim(limit=1, queues=["q"])
    parked = states.suspended(NOW + 600, "sleep", "parked")
    [record], _ = storage.finish_attempts([Finish(parking.lease, parked)], NOW)
    assert record is not None and record.status == "WAITING"
    [done] = claim(limit=1, queues=["q2"])
    [record], _ = storage.finish_attempts([Finish(done.lease, states.succeeded("1"))], NOW)
    assert record is not None and record.status == "COMPLETED"
    add_run("fresh", queue="q2", now=NOW - 1)

    depths = storage.queue_depths()
    assert depths == [
        QueueDepth("q", "DELAYED", 1, None),
        QueueDepth("q", "EXECUTING", 1, None),
        QueueDepth("q", "QUEUED", 1, NOW - 5),
        QueueDepth("q", "WAITING", 1, None),
        QueueDepth("q2", "QUEUED", 1, NOW - 1),
    ]


def test_queue_depths_oldest_is_the_earliest_queued_run(storage: Storage, add_run: AddRun) -> None:
    for i, created in enumerate([NOW - 3, NOW - 40, NOW - 7]):
        add_run(i, queue="q", now=created)
    [depth] = storage.queue_depths()
    assert (depth.status, depth.count, depth.oldest) == ("QUEUED", 3, NOW - 40)


def test_queue_depths_never_reads_the_finished_runs(backend: str, storage: Storage) -> None:
    """The plan reads the unfinished runs through indexes that leave the finished ones out (or
    through runs_status by status, which holds the finished ones too), never the whole table."""
    if backend == "sqlite":
        from tether.storage.sqlite.server import S

        db = storage._db()  # type: ignore[attr-defined]
        plan = " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + S["queue_depths"]))
        # each read of runs goes through one of the partial indexes of unfinished runs
        reads = re.findall(r"(?:SCAN|SEARCH) runs\b[^|]*", plan)
        used = {m for r in reads for m in re.findall(r"USING (?:COVERING )?INDEX (\w+)", r)}
        assert len(reads) == 3 and used == {"runs_ready", "runs_executing", "runs_waiting"}, plan
        return
    pytest.importorskip("psycopg")
    from tether.storage.postgres.server import S as PG

    def explain(conn: Any) -> list[dict[str, str]]:
        with conn.transaction():
            # what the planner can use, not what it prefers on a table this small
            conn.execute("SET LOCAL enable_seqscan = off")
            rows: list[dict[str, str]] = conn.execute("EXPLAIN " + PG["queue_depths"]).fetchall()
            return rows

    rows = storage._db().run(explain)  # type: ignore[attr-defined]
    plan = " | ".join(next(iter(row.values())) for row in rows)
    used = set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on runs", plan))
    # one part per status group (migration 0025: runs_status holds neither QUEUED nor EXECUTING)
    assert "Seq Scan" not in plan and len(used) >= 2, plan
    assert used <= {"runs_ready", "runs_keys", "runs_executing", "runs_waiting", "runs_status"}, plan


def test_key_counts_read_only_the_runs_not_finished_on_sqlite(backend: str,
                                                               storage: Storage) -> None:
    """A key's counts and runs (cancel_newest, max_queued, the per-key depth, cancel_in_progress)
    go through the partial indexes of unfinished runs, runs_keys (with its status since 0024) and
    runs_executing, even in a database never analyzed, where the planner would otherwise take
    runs_queue and read every finished run of the queue."""
    if backend != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's planner weighs its own statistics")
    from tether.storage.flow import _KEY_COUNT, _QUEUED
    from tether.storage.sqlite.queue_keys import _KEY_DEPTHS, _KEY_RUNS

    db = storage._db()  # type: ignore[attr-defined]
    max_queued = "SELECT count(*) AS n FROM runs WHERE queue = ? AND status IN ('QUEUED', 'DELAYED')"
    for sql, params in [(_KEY_DEPTHS, ("q", "q", 10)), (_KEY_RUNS, ("q", "k", "q", "k")),
                        (_KEY_COUNT.format(ph="?", queued=_QUEUED["?"]), ("q", "k", "q", "k")),
                        (max_queued, ("q",))]:
        plan = " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))
        reads = re.findall(r"(?:SCAN|SEARCH) runs\b[^|]*", plan)
        used = {m for r in reads for m in re.findall(r"USING (?:COVERING )?INDEX (\w+)", r)}
        assert reads and len(used) == len(reads) and used <= {"runs_keys", "runs_executing"}, plan
        assert "COVERING INDEX runs_keys" in plan or "runs_keys" not in plan, plan


_KEYWORDS = {"WHERE", "SET", "INDEXED", "ON", "AS", "GROUP", "ORDER", "LIMIT", "USING", "JOIN",
             "LEFT", "INNER", "RETURNING", "WINDOW", "UNION", "VALUES", "DEFAULT"}


def _full_scans_of_runs(db: Any, sql: str, params: Any) -> list[str]:
    """The plan's reads of the whole runs table (a SCAN of it, or of an alias of it, without an
    index)."""
    names = {"runs"} | {a for a in re.findall(r"\bruns\s+(?:AS\s+)?(\w+)", sql, re.IGNORECASE)
                        if a.upper() not in _KEYWORDS}
    plan = [row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params)]
    return [line for line in plan if (m := re.fullmatch(r"SCAN (\w+)", line.strip()))
            and m.group(1) in names]


def test_no_sqlite_statement_reads_every_run(backend: str, storage: Storage) -> None:
    """No statement of the SQLite store reads the whole runs table, though it grows with every
    run ever made: each finds its runs through an index (partial indexes need their condition
    spelled out, e.g. runs_status's since migration 0025, which leaves QUEUED and EXECUTING
    out). The runs list filtered by one status reads the index holding that status's runs."""
    if backend != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's planner weighs its own statistics")
    from tether.storage.records import RunFilter
    from tether.storage.run_filter import list_runs_sql
    from tether.storage.sqlite.access import Q
    from tether.storage.sqlite.runs import _in_list
    from tether.storage.sqlite.server import S

    db = storage._db()  # type: ignore[attr-defined]
    fragments = {"claim_update", "renew_leases"}  # completed by their callers: "(?, ?...)"
    for name, sql in [*Q.items(), *S.items()]:
        if name in fragments:
            sql += " (?)" + (" RETURNING *" if name == "claim_update" else "")
        named = set(re.findall(r"(?<!:):(\w+)", sql))
        numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
        params: Any = ({k: 1 for k in named} if named
                       else [1] * (max(numbered) if numbered else sql.count("?")))
        assert _full_scans_of_runs(db, sql, params) == [], name
    # the primary key walked, or its range before (after) a cursor: every run, or every older one
    every = re.compile(r"SCAN runs(?! USING)|sqlite_autoindex_runs_1 \(id[<>]")
    cursors: list[dict[str, Any]] = [{}, {"before_id": "run_x"}, {"newer_than_id": "run_x"}]
    for status in ["QUEUED", "DELAYED", "EXECUTING", "WAITING", "COMPLETED", "FAILED",
                   "CANCELED"]:
        for cursor in cursors:
            sql, params, _ = list_runs_sql(RunFilter(status=[status], limit=50, **cursor), "?",
                                           _in_list)
            plan = " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))
            assert re.search(r"INDEX runs_(status|ready|keys|executing|waiting)\b", plan), \
                (status, cursor, plan)
            assert not every.search(plan), (status, cursor, plan)
    # several statuses across indexes: each read through its own (finished ones walked newest
    # first in runs_status, never all read), never every run
    for statuses in (["QUEUED", "EXECUTING", "WAITING", "DELAYED"], ["QUEUED", "FAILED"],
                     ["EXECUTING", "COMPLETED"]):
        for cursor in cursors:
            sql, params, _ = list_runs_sql(RunFilter(status=statuses, limit=50, **cursor), "?",
                                           _in_list)
            plan = " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))
            assert not every.search(plan) and "UNION ALL" in plan, (statuses, cursor, plan)
            assert "COVERING INDEX runs_status" not in plan, (statuses, cursor, plan)
    # with a task too, the task's runs out of line are walked newest first, never all read and
    # sorted (the runs in line: test_runs_list_lines.py)
    for status in ["EXECUTING", "COMPLETED"]:
        sql, params, _ = list_runs_sql(RunFilter(status=[status], task_id=["t"], limit=50), "?",
                                       _in_list)
        plan = " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))
        assert "TEMP B-TREE FOR ORDER BY" not in plan, (status, plan)


def test_runs_list_by_any_set_of_statuses_reads_back_each_run_once(storage: Storage,
                                                                  add_run: AddRun,
                                                                  claim: Claim) -> None:
    """Whatever set of statuses the runs list is filtered by (within one partial index, or
    across several: one read per index), it gives exactly the runs of those statuses, newest
    first, each once; and pages through them by `before_id`."""
    from itertools import combinations

    from tether.storage.records import RunFilter

    for i in range(5):
        add_run(f"q{i}", queue="q")
    add_run("later", queue="q", delay=60)
    canceled = add_run("canceled", queue="q")
    assert storage.transition(canceled.id, states.canceled("test"), NOW) is not None
    _running, parking, done = (claim(limit=1, queues=["q"])[0] for _ in range(3))
    storage.finish_attempts([Finish(parking.lease, states.suspended(NOW + 600, "sleep", "p"))], NOW)
    storage.finish_attempts([Finish(done.lease, states.succeeded("1"))], NOW)
    everything = storage.list_runs(RunFilter(limit=100))
    by_status: dict[str, list[str]] = {}
    for record in everything:
        by_status.setdefault(str(record.status), []).append(record.id)
    assert set(by_status) == {"QUEUED", "DELAYED", "CANCELED", "EXECUTING", "WAITING",
                              "COMPLETED"}, by_status
    names = [*by_status, "FAILED"]
    for size in range(1, len(names) + 1):
        for chosen in combinations(names, size):
            want = sorted((i for s in chosen for i in by_status.get(s, [])), reverse=True)
            got = [r.id for r in storage.list_runs(RunFilter(status=list(chosen), limit=100))]
            assert got == want, chosen
            if len(want) > 1:  # the second page starts after the first run
                page = storage.list_runs(RunFilter(status=list(chosen), before_id=want[0],
                                                   limit=100))
                assert [r.id for r in page] == want[1:], chosen
