"""Retention with real worker processes on each backend: a worker with TETHER_RETENTION deletes
exactly the finished runs past the limit, with every row naming them, while another worker
keeps claiming; an unfinished run and a waiting parent's finished child stay; a deleted run's
idempotency key makes a new run. And `tether runs purge`: counts, --dry-run, filters, errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    assert_clean_error,
    run_cli,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether
from tether.storage.base import Storage

pytestmark = pytest.mark.slow

RETENTION = 6.0  # seconds: the test lets real time pass (run ids are made from it)
DEPENDENTS = ("attempts", "steps", "events", "run_tags", "waitpoints")


def _sql(storage: Storage, sqlite_sql: str, pg_sql: str, params: tuple[object, ...]) -> int:
    if hasattr(storage, "path"):
        with storage.db.write() as conn:  # type: ignore[attr-defined]
            cur = conn.execute(sqlite_sql, params)
            return int(cur.fetchone()[0]) if cur.description else int(cur.rowcount)
    def work(conn: object) -> int:
        cur = conn.execute(pg_sql, params)  # type: ignore[attr-defined]
        return int(cur.fetchone()["n"]) if cur.description else int(cur.rowcount)
    return storage._tx(work)  # type: ignore[attr-defined,no-any-return]


def count(storage: Storage, table: str, run_ids: list[str]) -> int:
    marks = ",".join("?" * len(run_ids))
    return _sql(storage, f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})",
                f"SELECT count(*) AS n FROM {table} WHERE run_id = ANY (%s)",
                (*run_ids,) if hasattr(storage, "path") else (run_ids,))


def finished_history(client: Tether, count_full: int) -> tuple[list[str], str, list[str]]:
    """Runs of every kind, ended by a worker: the old ones (parents and children), a parent
    waiting for a token and its finished child."""
    parents = [client.trigger("full", i, tags=["old"], idempotency_key=f"key-{i}").id
               for i in range(count_full)]
    holder = client.trigger("holder", 1).id
    for run_id in parents:
        wait_for_status(client, run_id, RunStatus.COMPLETED)
    wait_for_status(client, holder, RunStatus.WAITING)
    children = [r.id for p in parents for r in client.runs.children(p)]
    [held_child] = [r.id for r in client.runs.children(holder)]
    wait_for_status(client, held_child, RunStatus.COMPLETED)
    return parents + children, holder, [held_child]


def test_a_worker_deletes_expired_runs_while_another_keeps_claiming(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    client: Tether, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    app = app_file("retention_app.py")
    start_worker(app)  # keeps everything (no TETHER_RETENTION)
    old, holder, held_children = finished_history(client, 8)
    old_by = max(r.finished_at or 0.0 for r in client.storage.get_runs(old + held_children))
    for table in DEPENDENTS:
        assert count(client.storage, table, old) > 0, table
    delayed = client.trigger("leaf", 5, delay="30d").id
    time.sleep(max(0.0, old_by + RETENTION + 0.2 - time.time()))  # they are past the limit
    recent = [client.trigger("leaf", i).id for i in range(3)]
    for run_id in recent:
        wait_for_status(client, run_id, RunStatus.COMPLETED)

    ticks: list[str] = []
    stop = threading.Event()

    def trigger_ticks() -> None:
        while not stop.is_set() and len(ticks) < 400:  # bounded
            ticks.append(client.trigger("tick", len(ticks)).id)
            time.sleep(0.01)

    feeder = threading.Thread(target=trigger_ticks)
    feeder.start()
    try:
        (tmp_path / "purger").mkdir()
        purging = Workers(tmp_path / "purger", {**tether_env, "TETHER_RETENTION": f"{RETENTION:g}s"})
        try:
            purger = purging.start(app)
            wait_until(lambda: client.storage.get_runs(old) == [], 20,
                       lambda: "old runs still there\n" + purger.describe())
            # the runs that finished within the limit are there (checked before they age)
            kept = [holder, *held_children, *recent, delayed]
            assert {r.id for r in client.storage.get_runs(kept)} == set(kept)
            purger.wait_log("retention: deleted")
            # enough runs triggered and claimed around the purge (a worker that starts fast can
            # be done with it in less than half a second)
            wait_until(lambda: len(ticks) > 50, 20, lambda: f"{len(ticks)} ticks triggered")
            stop.set()
            feeder.join(10)
            for run_id in ticks:  # the claiming went on meanwhile
                wait_for_status(client, run_id, RunStatus.COMPLETED)
        finally:
            purging.close()
    finally:
        stop.set()
        feeder.join(10)
    assert len(ticks) > 50
    for table in DEPENDENTS:
        assert count(client.storage, table, old) == 0, table
    assert client.runs.retrieve(holder).status == RunStatus.WAITING
    assert client.runs.retrieve(held_children[0]).status == RunStatus.COMPLETED  # parent waits
    assert client.runs.retrieve(delayed).status == RunStatus.DELAYED
    # a deleted run's idempotency key makes a new run
    again = client.trigger("full", 0, idempotency_key="key-0").id
    assert again not in old
    wait_for_status(client, again, RunStatus.COMPLETED)


def test_the_purge_command(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    client: Tether, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    app = app_file("retention_app.py")
    start_worker(app)
    leaves = [client.trigger("leaf", i).id for i in range(4)]
    ticks = [client.trigger("tick", i).id for i in range(2)]
    for run_id in leaves + ticks:
        wait_for_status(client, run_id, RunStatus.COMPLETED)
    time.sleep(2.2)

    def tether(*args: str) -> str:
        result = run_cli(*args, env=tether_env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert tether("runs", "purge", "--older-than", "1h") == "deleted 0 run(s)"
    assert tether("runs", "purge", "--older-than", "2s", "--dry-run") == \
        "6 run(s) would be deleted (dry run: nothing deleted)"
    assert json.loads(tether("runs", "purge", "--older-than", "2s", "--task", "tick",
                             "--json")) == {"deleted": 2, "matched": 2, "dry_run": False}
    assert tether("runs", "purge", "--older-than", "2s", "--status", "failed") == "deleted 0 run(s)"
    assert tether("runs", "purge", "--older-than", "2s", "--status", "completed") == \
        "deleted 4 run(s)"
    assert client.storage.get_runs(leaves + ticks) == []

    assert_clean_error(run_cli("runs", "purge", "--older-than", "a week", env=tether_env,
                               cwd=tmp_path), "older_than must be seconds")
    assert_clean_error(run_cli("runs", "purge", "--older-than", "7d", "--status", "queued",
                               env=tether_env, cwd=tmp_path), "cannot be purged")
    missing = run_cli("runs", "purge", env=tether_env, cwd=tmp_path)
    assert missing.returncode == 2 and "--older-than" in missing.stderr
