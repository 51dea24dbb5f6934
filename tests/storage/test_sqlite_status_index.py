"""SQLite's runs_status holds only the statuses off the hot path (migration 0015): the runs list
and the other readers by status still walk an index, never the whole table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.storage import open_storage
from tether.storage.records import RunFilter
from tether.storage.run_filter import list_runs_sql
from tether.storage.sqlite.access import Q
from tether.storage.sqlite.runs import _in_list, _status_hint
from tether.storage.sqlite.store import SQLiteStorage


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStorage]:
    storage = open_storage(f"sqlite:///{tmp_path / 'plans.db'}")
    assert isinstance(storage, SQLiteStorage)
    storage.migrate()
    yield storage
    storage.close()


def _plan(store: SQLiteStorage, sql: str, params: list[object] | tuple[object, ...] = ()) -> str:
    return " ; ".join(row[3] for row in store.db.read("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize(("statuses", "index"), [
    (["FAILED"], "runs_status"),
    (["FAILED", "CANCELED", "TIMED_OUT", "EXPIRED"], "runs_status"),  # the failed view
    (["DELAYED"], "runs_status"),
    (["WAITING", "DELAYED"], "runs_status"),
    (["EXECUTING"], "runs_executing"),
])
def test_the_runs_list_by_status_reads_an_index(store: SQLiteStorage, statuses: list[str],
                                                index: str) -> None:
    sql, params, _ = list_runs_sql(RunFilter(status=statuses), "?", _in_list, _status_hint)
    plan = _plan(store, sql, params)
    assert f"USING INDEX {index}" in plan, plan


@pytest.mark.parametrize("name", ["promote_delayed", "promote_waiting", "expired_leases",
                                  "version_counts", "next_ready_at", "token_waiters"])
def test_readers_by_status_read_an_index(store: SQLiteStorage, name: str) -> None:
    sql = Q[name]
    params: dict[str, object] | list[object] = (
        dict.fromkeys(("now", "id", "waiting_for"), 1.0) if ":" in sql
        else [1.0] * sql.count("?"))
    plan = _plan(store, sql, params)  # type: ignore[arg-type]
    assert "SCAN runs" not in plan.replace("SCAN runs USING INDEX", ""), plan
