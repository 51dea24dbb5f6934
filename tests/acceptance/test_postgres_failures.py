"""PostgreSQL under failure: workers killed with SIGKILL (dead pid, or only an expired lease), every
connection of the workers terminated by the server while runs execute, two workers racing for the
same runs, and `tether db upgrade` run by several processes at once against a fresh schema.

PostgreSQL only: `db_url` is overridden below. The workers' connections carry an application_name
unique to the test, so the test terminates theirs and never its own (or another test's).
Queue limits across three worker processes on PostgreSQL: test_concurrency.py (runs on both backends).
"""

from __future__ import annotations

import collections
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from acceptance_support import (
    TETHER_EXE,
    WorkerProcess,
    Workers,
    make_env,
    read_lines,
    wait_for_line,
    wait_for_lines,
    wait_for_status,
    wait_until,
)
from psycopg.rows import dict_row

from backends import POSTGRES, database_url
from tether import BatchItem, RunStatus, Tether
from tether.storage.postgres.connection import split_url
from tether.storage.postgres.store import PostgresStorage
from tether.storage.sql import migration_files

pytestmark = pytest.mark.slow

APP = "pg_failures_app.py"
LINE = re.compile(r"^(\S+) (\S+) attempt (\d+) pid (\d+)$")


# -- fixtures: PostgreSQL only, worker connections tagged with an application_name ----------------
@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """Overrides the two-backend `db_url` of tests/conftest.py: a fresh PostgreSQL schema."""
    with database_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def app_name(db_url: str) -> str:
    _, schema = split_url(db_url)
    assert schema is not None
    return f"tw_{schema}"


@pytest.fixture
def tether_env(db_url: str, app_name: str) -> dict[str, str]:
    """Worker and CLI processes: the test's schema, connections named `app_name`."""
    return make_env(f"{db_url}&application_name={app_name}")


@pytest.fixture
def sql(db_url: str) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """`sql(query, params)`: rows of a query on the test's schema, on the test's own connection."""
    conninfo, schema = split_url(db_url)
    conn = psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}",
                           row_factory=dict_row)

    def query(text: str, params: Any = ()) -> list[dict[str, Any]]:
        return conn.execute(text, params).fetchall()

    yield query
    conn.close()


@pytest.fixture
def remote_workers(tmp_path: Path, tether_env: dict[str, str]) -> Iterator[Workers]:
    """Workers that register under another host name: nobody can check their pid."""
    directory = tmp_path / "remote"
    directory.mkdir()
    pool = Workers(directory, {**tether_env, "TETHER_TEST_HOSTNAME": "another-machine"})
    yield pool
    pool.close()


# -- helpers --------------------------------------------------------------------------------------
def executions(side_file: Path) -> list[tuple[str, str, int, int]]:
    """(run_id, step or "exec", attempt, pid) for every call the app recorded."""
    out = []
    for line in read_lines(side_file):
        match = LINE.match(line)
        assert match, f"unexpected line in {side_file.name}: {line!r}"
        out.append((match[1], match[2], int(match[3]), int(match[4])))
    return out


def start_all(start_worker: Callable[..., WorkerProcess], app: Path, count: int,
              *args: str) -> list[WorkerProcess]:
    started = [start_worker(app, *args, ready=False) for _ in range(count)]
    return [worker.wait_ready() for worker in started]


def terminate_connections(app_name: str) -> list[dict[str, Any]]:
    """Terminate every server connection named `app_name` (the workers' connections only)."""
    with psycopg.connect(POSTGRES, autocommit=True, row_factory=dict_row) as admin:
        return admin.execute(
            "SELECT pid, query, pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
            " WHERE datname = current_database() AND usename = current_user"
            " AND application_name = %s AND pid <> pg_backend_pid()", (app_name,)).fetchall()


def listening(app_name: str) -> int:
    """How many connections named `app_name` are LISTENing (one per healthy worker)."""
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND query LIKE 'LISTEN %%'", (app_name,)).fetchone()
    assert row is not None
    return int(row[0])


def explain(text: str, workers: Workers) -> Callable[[], str]:
    """A wait's failure message: `text` and what the workers logged."""
    return lambda: f"{text}\n{workers.describe()}"


def attempt_outcomes(client: Tether, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.name, e.outcome) for e in client.runs.trace(run_id) if e.kind == "attempt"]


# -- 1. a worker killed mid-step ------------------------------------------------------------------
def test_sigkill_one_of_three_workers_mid_step_run_finishes_on_another(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    assert isinstance(client.storage, PostgresStorage)
    app = app_file(APP)
    side_file = tmp_path / "executions.log"
    pool = start_all(start_worker, app, 3)
    run_id = client.trigger("chain", {"steps": 5, "block_at": 3}).id

    wait_until(lambda: [e for e in executions(side_file) if e[:3] == (run_id, "3", 1)], 15,
               lambda: f"step 3 never started\n{workers.describe()}")
    # Step rows are written in a pipeline: a step whose row had not committed when its worker
    # died runs again (at-least-once, as documented; the worker's first rows wait for its step
    # writer to connect). Killed once both rows are stored, the run must not repeat them.
    wait_until(lambda: {"step-1", "step-2"} <= set(client.storage.load_steps(run_id)), 15,
               lambda: f"steps 1 and 2 never stored\n{workers.describe()}")
    victim_pid = next(e[3] for e in executions(side_file) if e[1] == "3")
    victim = next(w for w in pool if w.pid == victim_pid)
    victim.kill()
    assert victim.proc.returncode == -9, victim.describe()
    (tmp_path / "release").touch()

    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=workers.describe)
    survivors = {w.pid for w in pool if w is not victim}
    assert run.output is not None
    assert run.output["pid"] in survivors
    assert run.output["values"] == [10, 20, 30, 40, 50]
    assert run.attempts == 2
    calls = [(step, attempt) for r, step, attempt, _ in executions(side_file) if r == run_id]
    assert calls == [("1", 1), ("2", 1), ("3", 1), ("3", 2), ("4", 2), ("5", 2)]
    assert attempt_outcomes(client, run_id) == [("attempt 1", "CRASHED"),
                                                ("attempt 2", "COMPLETED")]
    assert all(w.proc.poll() is None for w in pool if w is not victim), workers.describe()


def test_sigkill_worker_of_another_machine_run_recovered_when_its_lease_expires(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    remote_workers: Workers, client: Tether, tmp_path: Path,
    sql: Callable[..., list[dict[str, Any]]],
) -> None:
    app = app_file(APP)
    side_file = tmp_path / "executions.log"

    def describe() -> str:
        return workers.describe() + "\n" + remote_workers.describe()

    remote = remote_workers.start(app)
    run_id = client.trigger("chain", {"steps": 4, "block_at": 2}).id
    wait_for_line(side_file, f"{run_id} 2 attempt 1 pid {remote.pid}", context=describe)
    hosts = {r["pid"]: r["hostname"] for r in sql("SELECT pid, hostname FROM workers")}
    assert hosts[remote.pid] == "another-machine"

    local = start_all(start_worker, app, 2)
    remote.kill()
    killed_at = time.monotonic()
    (tmp_path / "release").touch()

    def next_attempt_started() -> bool:
        return any(e[0] == run_id and e[2] == 2 for e in executions(side_file))

    wait_until(next_attempt_started, 15, lambda: f"never retried\n{describe()}")
    recovered_after = time.monotonic() - killed_at
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=describe)

    # The lease (2 s, renewed every ~0.7 s) had at least ~1.3 s left: recovery had to wait for it.
    assert recovered_after >= 1.0, recovered_after
    assert run.output is not None
    assert run.output["pid"] in {w.pid for w in local}
    assert run.attempts == 2
    calls = [(step, attempt) for r, step, attempt, _ in executions(side_file) if r == run_id]
    assert calls == [("1", 1), ("2", 1), ("2", 2), ("3", 2), ("4", 2)]
    assert attempt_outcomes(client, run_id) == [("attempt 1", "CRASHED"),
                                                ("attempt 2", "COMPLETED")]


# -- 2. every connection of the workers terminated while runs execute -----------------------------
STEPS = 5
BATCH = 20


def check_batch(client: Tether, sql: Callable[..., list[dict[str, Any]]], side_file: Path,
                run_ids: list[str], context: Callable[[], str]) -> set[int]:
    """Every run COMPLETED with each step checkpointed once; a step ran twice only if a later
    attempt re-ran the step that was executing. Returns the pids that executed the runs."""
    pids = set()
    for run_id in run_ids:
        run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=30, context=context)
        assert run.output is not None
        assert run.output["values"] == [10 * i for i in range(1, STEPS + 1)], run
        pids.add(run.output["pid"])
    calls = collections.Counter((r, step) for r, step, _, _ in executions(side_file) if r in run_ids)
    for run_id in run_ids:
        counts = [calls[(run_id, str(step))] for step in range(1, STEPS + 1)]
        assert min(counts) == 1 and max(counts) <= 2 and counts.count(2) <= 1, (run_id, counts)
    steps = sql("SELECT run_id, count(*) AS n, count(DISTINCT key) AS keys,"
                " bool_and(status = 'COMPLETED') AS done FROM steps"
                " WHERE run_id = ANY (%s) GROUP BY run_id", (run_ids,))
    assert len(steps) == len(run_ids)
    assert all(r["n"] == STEPS and r["keys"] == STEPS and r["done"] for r in steps), steps
    attempts = {r["run_id"]: r for r in sql(
        "SELECT run_id, count(*) AS n, count(DISTINCT number) AS numbers,"
        " bool_or(status = 'COMPLETED') AS completed FROM attempts"
        " WHERE run_id = ANY (%s) GROUP BY run_id", (run_ids,))}
    for run_id in run_ids:
        run = client.runs.retrieve(run_id)
        row = attempts[run_id]
        assert row["n"] == row["numbers"] == run.attempts and row["completed"], (run, row)
    return pids


def test_workers_survive_all_their_connections_terminated_twice(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, app_name: str, sql: Callable[..., list[dict[str, Any]]],
) -> None:
    app = app_file(APP)
    side_file = tmp_path / "executions.log"
    pool = start_all(start_worker, app, 2)
    wait_until(lambda: listening(app_name) == 2, 10, "the workers never LISTENed")
    batch = [BatchItem({"steps": STEPS, "seconds": 0.15}) for _ in range(BATCH)]

    for round_ in (1, 2):
        run_ids = [h.id for h in client.batch_trigger("chain", batch)]

        def progressed(run_ids: list[str] = run_ids) -> bool:
            # mid-flight: the runs checkpointed about two of their five steps
            return sum(e[0] in run_ids for e in executions(side_file)) >= 2 * BATCH

        wait_until(progressed, 20, explain(f"round {round_}: runs did not progress", workers))
        killed = terminate_connections(app_name)
        assert all(r["ok"] for r in killed), killed
        listeners = [r for r in killed if r["query"].startswith("LISTEN")]
        assert len(listeners) == 2 and len(killed) > 2, killed

        pids = check_batch(client, sql, side_file, run_ids, workers.describe)
        assert pids <= {w.pid for w in pool}
        assert all(w.proc.poll() is None for w in pool), workers.describe()
        wait_until(lambda: listening(app_name) == 2, 10,
                   explain(f"round {round_}: the workers did not LISTEN again", workers))

        # Both workers, never restarted, execute runs triggered after the disruption.
        after = [h.id for h in client.batch_trigger("chain", [
            BatchItem({"steps": STEPS, "seconds": 0.05}) for _ in range(BATCH)])]
        pids = check_batch(client, sql, side_file, after, workers.describe)
        assert pids == {w.pid for w in pool}, (pids, workers.describe())


# -- 4. two workers racing for the same runs ------------------------------------------------------
def test_two_workers_racing_execute_each_run_once(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, sql: Callable[..., list[dict[str, Any]]],
) -> None:
    app = app_file(APP)
    side_file = tmp_path / "executions.log"
    pool = start_all(start_worker, app, 2, "--concurrency", "10")
    run_ids: list[str] = []
    for start in range(0, 300, 50):
        run_ids += [h.id for h in client.batch_trigger(
            "tick", [BatchItem({"n": n}) for n in range(start, start + 50)])]

    wait_for_lines(side_file, len(run_ids), timeout=40, context=workers.describe)

    def all_completed() -> bool:
        rows = sql("SELECT count(*) AS n FROM runs WHERE status = 'COMPLETED' AND id = ANY (%s)",
                   (run_ids,))
        return bool(rows[0]["n"] == len(run_ids))

    wait_until(all_completed, 30, lambda: f"not every run completed\n{workers.describe()}")
    time.sleep(0.3)  # a duplicate execution would have been recorded by now
    calls = collections.Counter(r for r, _, _, _ in executions(side_file))
    assert set(calls) == set(run_ids)
    assert {n for n in calls.values()} == {1}, [r for r, n in calls.items() if n != 1]
    rows = sql("SELECT attempts, count(*) AS n FROM runs WHERE id = ANY (%s) GROUP BY attempts",
               (run_ids,))
    assert rows == [{"attempts": 1, "n": len(run_ids)}]
    attempts = sql("SELECT run_id, count(*) AS n, max(status) AS status, max(worker_id) AS worker"
                   " FROM attempts WHERE run_id = ANY (%s) GROUP BY run_id", (run_ids,))
    assert len(attempts) == len(run_ids)
    assert all(r["n"] == 1 and r["status"] == "COMPLETED" for r in attempts), attempts
    # both workers took part in the race
    assert len({r["worker"] for r in attempts}) == 2
    assert {pid for _, _, _, pid in executions(side_file)} == {w.pid for w in pool}


# -- 5. concurrent `tether db upgrade` against a fresh schema -------------------------------------
def test_concurrent_db_upgrade_on_fresh_schema(
    tether_env: dict[str, str], db_url: str, app_name: str, tmp_path: Path,
    sql: Callable[..., list[dict[str, Any]]],
) -> None:
    """Four `tether db upgrade` processes start together on a schema that does not exist yet.
    To make them meet, the test creates the schema in a transaction it holds open: each process
    then waits on that transaction in its own CREATE SCHEMA; the test rolls back and all four
    create the schema and migrate at the same moment."""
    _, schema = split_url(db_url)
    procs: list[subprocess.Popen[str]] = []
    with psycopg.connect(POSTGRES, autocommit=True) as gate, \
            psycopg.connect(POSTGRES, autocommit=True) as observer:
        gate.execute("BEGIN")
        gate.execute(f'CREATE SCHEMA "{schema}"')
        try:
            procs = [subprocess.Popen(
                [str(TETHER_EXE), "db", "upgrade"], env=tether_env, cwd=tmp_path,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]

            def blocked() -> bool:
                row = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    " AND wait_event_type = 'Lock' AND query LIKE 'CREATE SCHEMA%%'",
                    (app_name,)).fetchone()
                if any(p.poll() is not None for p in procs):
                    pytest.fail("a `tether db upgrade` ended early: "
                                + repr([p.communicate() for p in procs if p.poll() is not None]))
                return row is not None and row[0] == len(procs)

            wait_until(blocked, 20, "the upgrades never all waited on the schema")
            gate.execute("ROLLBACK")
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=30)
                results.append((proc.returncode, out.strip(), err.strip()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)

    assert [code for code, _, _ in results] == [0] * 4, results
    outputs = sorted(out for _, out, _ in results)
    names = [name for name, _ in migration_files("tether.storage.postgres.migrations")]
    assert outputs == sorted(["applied: " + ", ".join(names)] + ["schema is up to date"] * 3), results
    rows = sql("SELECT name, count(*) AS n FROM tether_migrations GROUP BY name ORDER BY name")
    assert rows == [{"name": name, "n": 1} for name in names]
