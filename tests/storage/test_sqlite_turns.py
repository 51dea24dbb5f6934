"""SQLite writers of Tether take turns at the write lock (storage/sqlite/turns.py): a writer that
finds it taken waits for the holder to let go, in the kernel, instead of retrying; a nested write
in one thread, or a holder that dies, never leaves a writer waiting for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tether.errors import StorageUnavailable
from tether.storage.sqlite.connection import Connections


def _table(path: Path) -> Connections:
    conns = Connections(path)
    with conns.write() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    return conns


def test_a_writer_waits_for_its_turn_without_retrying(tmp_path: Path) -> None:
    db = tmp_path / "turns.db"
    first, second = _table(db), Connections(db)  # two handles, as two processes have
    assert Path(f"{db}-tether-write").exists()
    busy: list[str] = []  # every statement SQLite refused because the lock was taken
    retry = second._retry

    def counted(execute: object, sql: str, params: object) -> object:
        def attempt(s: str, p: object) -> object:
            try:
                return execute(s, p)  # type: ignore[operator]
            except Exception as exc:
                busy.append(str(exc))
                raise
        return retry(attempt, sql, params)

    second._retry = counted  # type: ignore[method-assign]
    holding = threading.Event()

    def hold() -> None:
        with first.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    since = time.monotonic()
    with second.write() as conn:
        waited = time.monotonic() - since
        conn.execute("INSERT INTO t VALUES (2)")
    thread.join()
    assert busy == []  # it waited for its turn, not on SQLite's lock
    assert waited > 0.2
    assert [r[0] for r in first.read("SELECT n FROM t ORDER BY n")] == [1, 2]
    first.close()
    second.close()


def test_a_nested_write_in_one_thread_times_out_instead_of_waiting_for_itself(
        tmp_path: Path) -> None:
    db = tmp_path / "nested.db"
    outer = _table(db)
    inner = Connections(db, busy_timeout=0.3)
    started = time.monotonic()
    with outer.write(), pytest.raises(StorageUnavailable), inner.write():
        pass
    assert time.monotonic() - started < 5
    outer.close()
    inner.close()


def test_a_holder_that_dies_gives_its_turn_up(tmp_path: Path) -> None:
    db = tmp_path / "dead.db"
    _table(db).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from tether.storage.sqlite.connection import Connections
        with Connections(Path({str(db)!r})).write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            print("holding", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        waiter = Connections(db)
        done = threading.Event()

        def write() -> None:
            with waiter.write() as conn:
                conn.execute("INSERT INTO t VALUES (2)")
            done.set()

        threading.Thread(target=write, daemon=True).start()
        assert not done.wait(0.3)  # waiting for the holder's turn
        os.kill(holder.pid, signal.SIGKILL)
        assert done.wait(10)
        # the holder's uncommitted row is gone with it
        assert [r[0] for r in waiter.read("SELECT n FROM t")] == [2]
        waiter.close()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_thread_that_wrote_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    db = tmp_path / "threads.db"
    conns = _table(db)
    turn_file = f"{db}-tether-write"

    def held() -> int:
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == turn_file
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))

    before = held()

    def write() -> None:
        with conns.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")

    for _ in range(20):  # as a worker's sync tasks do, each in a thread of its own
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
    assert held() <= before + 1
    conns.close()
    assert held() == 0


def test_a_writer_waiting_on_a_writer_without_a_turn_gives_its_turn_back(tmp_path: Path) -> None:
    """The sqlite3 shell (or any writer that takes no turn) holds the lock: a writer of Tether
    waits for it without holding its turn, so that a frozen waiter holds up nobody."""
    import fcntl
    import sqlite3

    db = tmp_path / "foreign.db"
    conns = _table(db)
    foreign = sqlite3.connect(db, isolation_level=None)
    foreign.execute("BEGIN IMMEDIATE")
    done = threading.Event()

    def write() -> None:
        with conns.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    time.sleep(0.2)
    assert not done.is_set()  # waiting for the foreign writer
    probe = os.open(f"{db}-tether-write", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the turn is free meanwhile
        fcntl.flock(probe, fcntl.LOCK_UN)
    finally:
        os.close(probe)
    foreign.execute("COMMIT")
    foreign.close()
    assert done.wait(5)
    conns.close()
