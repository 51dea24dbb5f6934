"""Storage contract: the runs list by task or queue. Since migration 0026 the task's and the
queue's indexes hold only the runs that left the line (not QUEUED, not DELAYED), so such a list
reads those and the runs in line in two parts (one statement when a tag narrows it too);
whatever the filter, it gives exactly the runs that match, newest first, and pages by either
cursor."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from contract_helpers import NOW, AddRun, Claim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.engine import states
from tether.options import Retry
from tether.storage.base import Storage
from tether.storage.records import Finish, RunFilter, RunRecord

STATUSES = ["QUEUED", "DELAYED", "EXECUTING", "WAITING", "COMPLETED", "FAILED", "CANCELED"]
PLACES = [("t", "q"), ("t", "r"), ("u", "q"), ("u", "r")]


def _population(storage: Storage, add_run: AddRun, claim: Claim) -> list[RunRecord]:
    """Runs of two tasks in two queues in every status, some of them back in line after a
    failed attempt (entered in the task's index at the claim, then out of it again)."""
    for task, queue in PLACES:
        made = [add_run(i, task=task, queue=queue, tags=["even" if i % 2 == 0 else "odd"])
                for i in range(7)]
        add_run("later", task=task, queue=queue, delay=60)
        assert storage.transition(made[0].id, states.canceled("test"), NOW) is not None
        running, parked, done, failed, retried = claim(limit=5, tasks=[task], queues=[queue])
        assert running.lease.run_id  # stays EXECUTING
        storage.finish_attempts([
            Finish(parked.lease, states.suspended(NOW + 600, "sleep", "p")),
            Finish(done.lease, states.succeeded("1")),
            Finish(failed.lease, states.attempt_failed(
                attempt=3, max_attempts=3, policy=Retry(jitter=False), error_json="{}", now=NOW)),
            Finish(retried.lease, states.attempt_failed(
                attempt=1, max_attempts=3, policy=Retry(jitter=False), error_json="{}", now=NOW)),
        ], NOW)
    everything = storage.list_runs(RunFilter(limit=1000))
    assert {str(r.status) for r in everything} == set(STATUSES)
    assert sum(1 for r in everything if r.attempts == 1 and r.status == "QUEUED") == 4
    return everything


def _expected(runs: list[RunRecord], flt: RunFilter) -> list[str]:
    ids = sorted(r.id for r in runs
                 if (flt.status is None or str(r.status) in flt.status)
                 and (flt.task_id is None or r.task_id in flt.task_id)
                 and (flt.queue is None or r.queue in flt.queue)
                 and (flt.tag is None or bool(set(flt.tag) & set(json.loads(r.tags)))))
    if flt.newer_than_id is not None:
        return [i for i in ids if i > flt.newer_than_id][:flt.limit][::-1]
    ids.reverse()
    if flt.before_id is not None:
        ids = [i for i in ids if i < flt.before_id]
    return ids[:flt.limit]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statuses=st.none() | st.sets(st.sampled_from(STATUSES), min_size=1).map(sorted),
       tasks=st.sampled_from([None, ["t"], ["u"], ["t", "u"], ["u", "nobody", "t"], ["t", "t"],
                              ["nobody"]]),
       queues=st.sampled_from([None, ["q"], ["r"], ["q", "r"], ["r", "q", "r"]]),
       tags=st.sampled_from([None, None, ["even"], ["odd"]]),
       cursor=st.sampled_from([None, "before", "newer"]), at=st.integers(0, 39),
       limit=st.integers(1, 12))
def test_runs_list_by_task_or_queue_matches_the_runs_it_stored(
        storage: Storage, add_run: AddRun, claim: Claim, statuses: list[str] | None,
        tasks: list[str] | None, queues: list[str] | None, tags: list[str] | None,
        cursor: str | None, at: int,
        limit: int) -> None:
    kept = _PEOPLED.get(id(storage))
    if kept is None or kept[0] is not storage:  # the first example on this storage
        kept = _PEOPLED[id(storage)] = (storage, _population(storage, add_run, claim))
    runs = kept[1]
    mark = sorted(r.id for r in runs)[at % len(runs)]
    flt = RunFilter(status=statuses, task_id=tasks, queue=queues, tag=tags, limit=limit,
                    before_id=mark if cursor == "before" else None,
                    newer_than_id=mark if cursor == "newer" else None)
    assert [r.id for r in storage.list_runs(flt)] == _expected(runs, flt)


_PEOPLED: dict[int, tuple[Storage, list[RunRecord]]] = {}  # the population, once per storage


def test_task_and_queue_indexes_leave_the_line_out(backend: str, storage: Storage) -> None:
    """Migration 0026: runs_task and runs_queue hold only runs that left the line, so a trigger
    writes neither (the claim enters the run)."""
    if backend == "sqlite":
        rows = storage._db().read(  # type: ignore[attr-defined]
            "SELECT name, sql FROM sqlite_master WHERE name IN ('runs_task', 'runs_queue')")
        found = {row[0]: row[1] for row in rows}
    else:
        rows = storage._all(  # type: ignore[attr-defined]
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs'"
            " AND schemaname = current_schema() AND indexname IN ('runs_task', 'runs_queue')")
        found = {row["indexname"]: row["indexdef"] for row in rows}
    assert set(found) == {"runs_task", "runs_queue"}
    for definition in found.values():
        assert re.search(r"WHERE.*status.*QUEUED.*DELAYED", definition), definition


def _plan(storage: Storage, flt: RunFilter) -> str:
    from tether.storage.run_filter import list_runs_sql
    from tether.storage.sqlite.runs import _in_list

    sql, params, _ = list_runs_sql(flt, "?", _in_list)
    db: Any = storage._db()  # type: ignore[attr-defined]
    return " | ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))


def test_sqlite_lists_by_task_or_queue_read_their_indexes(backend: str, storage: Storage) -> None:
    """On SQLite (which needs a partial index's condition spelled out to use it) a list by task
    or queue walks that index for the runs out of line, and finds the ids of the runs in line in
    runs_keys alone (it holds their task since 0026), reading only the rows it returns: never
    every run, never the primary key's walk."""
    if backend != "sqlite":
        pytest.skip("SQLite's plans; PostgreSQL's planner weighs its own statistics")
    walk = re.compile(r"SCAN runs(?! USING COVERING INDEX runs_keys)")
    for column, index in (("task_id", "runs_task"), ("queue", "runs_queue")):
        for statuses in (None, ["COMPLETED"], ["EXECUTING", "FAILED"], ["QUEUED", "COMPLETED"]):
            flt = RunFilter(status=statuses, limit=20, **{column: ["x"]})  # type: ignore[arg-type]
            plan = _plan(storage, flt)
            assert f"INDEX {index} ({column}=?)" in plan, (statuses, plan)
            assert not walk.search(plan), plan
            if statuses != ["COMPLETED"] and statuses != ["EXECUTING", "FAILED"]:
                assert "COVERING INDEX runs_keys" in plan, (statuses, plan)
        for statuses in (["QUEUED"], ["DELAYED", "QUEUED"]):
            flt = RunFilter(status=statuses, limit=20, **{column: ["x"]})  # type: ignore[arg-type]
            plan = _plan(storage, flt)
            assert "COVERING INDEX runs_keys" in plan, (statuses, plan)
            assert index not in plan and not walk.search(plan), plan
    # several tasks (queues): each one's runs out of line walked newest first, never all sorted
    for column, index in (("task_id", "runs_task"), ("queue", "runs_queue")):
        flt = RunFilter(status=["COMPLETED"], limit=20, **{column: ["x", "y"]})  # type: ignore[arg-type]
        plan = _plan(storage, flt)
        assert plan.count(f"INDEX {index} ({column}=?)") == 2, plan
    # narrowed by a tag too: one statement, led by the tag's runs (not two reads of them)
    plan = _plan(storage, RunFilter(task_id=["x"], tag=["t"], limit=20))
    assert "run_tags" in plan and "UNION" not in plan, plan
