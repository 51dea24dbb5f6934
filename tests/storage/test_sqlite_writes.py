"""SQLite write transactions (connection.WriteTransaction): committed, rolled back on an
exception, retried while another writer holds the lock, and a nested write on the same file in
one thread times out instead of waiting for itself."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tether.errors import StorageUnavailable
from tether.storage.sqlite.connection import Connections


def _table(path: Path, busy_timeout: float = 60.0) -> Connections:
    conns = Connections(path, busy_timeout=busy_timeout)
    with conns.write() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    return conns


def test_a_write_commits_or_rolls_back(tmp_path: Path) -> None:
    conns = _table(tmp_path / "w.db")
    with conns.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ValueError), conns.write() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise ValueError("no")
    assert [r[0] for r in conns.read("SELECT n FROM t")] == [1]
    conns.close()


def test_a_write_waits_for_another_writer(tmp_path: Path) -> None:
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
    assert not done.is_set()
    foreign.execute("COMMIT")
    foreign.close()
    assert done.wait(5)
    conns.close()


def test_a_nested_write_in_one_thread_times_out(tmp_path: Path) -> None:
    db = tmp_path / "nested.db"
    outer, inner = _table(db), Connections(db, busy_timeout=0.3)
    started = time.monotonic()
    with outer.write(), pytest.raises(StorageUnavailable), inner.write():
        pass
    assert time.monotonic() - started < 5
    outer.close()
    inner.close()
