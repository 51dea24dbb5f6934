"""Step rows written in a pipeline (PostgreSQL: storage/postgres/step_writer.py) while the worker
or the database is broken mid-run: a 1,000-call run whose worker is killed with SIGKILL, frozen
past its lease with SIGSTOP, or whose PostgreSQL server is restarted (crash-like, `immediate`
mode, on a throwaway cluster). Each time the run completes, the stored positions are a prefix
(no row after a lost one), each stored result is from its call's last execution, and no `once`
ran twice. The SIGKILL and SIGSTOP tests run on both backends (SQLite has no pipeline: the same
promises hold there trivially)."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    copy_app,
    make_env,
    read_lines,
    wait_for_lines,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether
from tether.serialization import loads
from tether.storage.records import StepRecord

pytestmark = pytest.mark.slow

CALLS = 1000
ONCES = [f"o{i}" for i in range(CALLS) if i % 100 == 50]


def _rows(client: Tether, run_id: str) -> dict[str, StepRecord]:
    return client.storage.load_steps(run_id)


def check_history(client: Tether, run_id: str, directory: Path, complete: bool) -> int:
    """The run's stored rows against what its calls recorded; returns how many are stored."""
    rows = _rows(client, run_id)
    seqs = sorted(row.seq or 0 for row in rows.values())
    assert seqs == list(range(1, len(seqs) + 1)), "stored positions are not a prefix"
    if complete:
        assert len(rows) == CALLS
    last: dict[str, str] = {}
    for line in read_lines(directory / "executions.log"):
        key, execution, _, _ = line.split()
        last[key] = execution
    for key, row in rows.items():
        assert row.status == "COMPLETED", (key, row)
        if key.startswith("s"):
            assert loads(row.output) == last[key], f"{key}: stored result is not from its last run"
    once_calls = collections.Counter(line.split()[0] for line in read_lines(directory / "once.log"))
    assert all(count == 1 for count in once_calls.values()), once_calls
    if complete:
        assert sorted(once_calls) == sorted(ONCES)
    return len(rows)


def test_a_worker_killed_while_rows_are_in_the_pipeline(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    app = app_file("pipeline_app.py")
    first = start_worker(app)
    run_id = client.trigger("long-run", {"n": CALLS, "kill_at": 640}).id
    assert first.proc.wait(timeout=60) == -signal.SIGKILL, workers.describe()
    # what the killed worker left: its rows up to some call (at least the last `once`, whose
    # start marker waited for every row before it), none after
    kept = check_history(client, run_id, tmp_path, complete=False)
    assert 551 <= kept <= 640, kept

    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=60,
                          context=workers.describe)
    assert run.attempts == 2
    check_history(client, run_id, tmp_path, complete=True)
    executed = collections.Counter(line.split()[0] for line in
                                   read_lines(tmp_path / "executions.log"))
    # the calls whose rows were lost with the worker ran again, the others once
    assert {key for key, count in executed.items() if count == 2} == {
        f"s{i}" for i in range(kept, 641) if i % 100 != 50}


def test_a_frozen_worker_stores_nothing_of_a_run_it_lost(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    """SIGSTOP mid-run, past the lease (2 s); another worker completes the run; SIGCONT: the
    frozen worker starts no further step and stores no row of the run (its queued rows are
    refused by the lease token)."""
    app = app_file("pipeline_app.py")
    first = start_worker(app)
    run_id = client.trigger("long-run", {"n": CALLS, "pace": 0.003}).id
    wait_for_lines(tmp_path / "executions.log", 200, timeout=30, context=workers.describe)
    first.send(signal.SIGSTOP)
    mine = sum(1 for line in read_lines(tmp_path / "executions.log")
               if line.endswith(f" {first.pid}"))
    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=90,
                          context=workers.describe)
    assert run.attempts == 2
    stored = _rows(client, run_id)
    first.send(signal.SIGCONT)
    time.sleep(2.0)  # its loop, its writer and its housekeeping run on
    assert _rows(client, run_id) == stored, "the resumed worker stored rows of a run it lost"
    assert sum(1 for line in read_lines(tmp_path / "executions.log")
               if line.endswith(f" {first.pid}")) == mine, "the resumed worker started a step"
    check_history(client, run_id, tmp_path, complete=True)
    assert first.proc.poll() is None, workers.describe()


# -- a PostgreSQL server of the test's own, restarted mid-run ------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scratch_cluster() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL cluster on a free port (trust auth): (its URL, its name). Dropped
    at teardown, whatever the outcome. Needs root and Debian's pg_createcluster."""
    if shutil.which("pg_createcluster") is None or os.geteuid() != 0:
        pytest.skip("needs root and pg_createcluster for a throwaway PostgreSQL cluster")
    version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
    name, port = f"tether{uuid.uuid4().hex[:8]}", _free_port()
    subprocess.run(["pg_createcluster", version, name, "-p", str(port), "--", "--auth=trust"],
                   check=True, capture_output=True)
    try:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", f"{version} {name}"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", *f"{version} {name}".split()],
                       check=False, capture_output=True)


def test_a_postgres_crash_and_restart_while_rows_are_in_the_pipeline(
    scratch_cluster: tuple[str, str], tmp_path: Path,
) -> None:
    """The server stops in `immediate` mode (as in a crash: commits not yet flushed are lost)
    and starts again mid-run; the worker survives (its lease, 10 s, outlives the outage), its
    writer reconnects and sends again what may have been lost, before anything newer."""
    server, cluster = scratch_cluster
    url = f"{server}?schema=pipeline"
    workers = Workers(tmp_path, {**make_env(url), "PIPELINE_LEASE": "10"})
    client = Tether(url)
    try:
        app = copy_app("pipeline_app.py", tmp_path)
        worker = workers.start(app)
        run_id = client.trigger("long-run", {"n": CALLS, "pace": 0.003}).id
        wait_until(lambda: len(_rows(client, run_id)) >= 150, 30, workers.describe)
        subprocess.run(["pg_ctlcluster", *cluster.split(), "stop", "-m", "immediate"],
                       check=True, capture_output=True)
        time.sleep(0.5)  # the run goes on; its rows wait in the pipeline
        subprocess.run(["pg_ctlcluster", *cluster.split(), "start"], check=True,
                       capture_output=True)
        run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=90,
                              context=workers.describe)
        assert run.attempts == 1, workers.describe()  # the worker and its attempt survived
        assert worker.proc.poll() is None, workers.describe()
        check_history(client, run_id, tmp_path, complete=True)
        assert "step writer: PostgreSQL connection lost" in worker.log(), worker.describe()
    finally:
        workers.close()
        client.close()
