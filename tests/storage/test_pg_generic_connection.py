"""PostgreSQL: the worker's claims and endings run on a connection of their own, on which every
statement has its generic plan (set once, at connect, instead of a statement per batch); it is
made again after the server closed it, and a second thread meanwhile uses the pool."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from backends import POSTGRES, database_url
from tether.storage.postgres.connection import Connections


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with database_url("postgres", tmp_path) as url:
        connections = Connections(url, reconnect_timeout=10.0)
        try:
            yield connections
        finally:
            connections.close()


def _session(conn: Any) -> tuple[int, str, bool]:
    row = conn.execute("SELECT pg_backend_pid() AS pid, current_setting('plan_cache_mode') AS m"
                       ).fetchone()
    return row["pid"], row["m"], conn.info.transaction_status.name == "IDLE"


def test_the_generic_connection_is_kept_and_set_once(db: Connections) -> None:
    pid, mode, _ = db.run(_session, generic=True)
    assert mode == "force_generic_plan"
    assert db.run(_session, generic=True)[0] == pid  # the same session, batch after batch
    assert db.run(lambda c: db.generic(c), generic=True)
    _, pooled_mode, _ = db.run(_session)  # other statements: the pool, plans chosen as usual
    assert pooled_mode == "auto"
    assert not db.run(lambda c: db.generic(c))


def test_it_is_made_again_after_the_server_closed_it(db: Connections) -> None:
    import psycopg

    pid, _, _ = db.run(_session, generic=True)
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    again, mode, _ = db.run(_session, generic=True)  # (the statement is retried)
    assert again != pid and mode == "force_generic_plan"


def test_a_failed_transaction_does_not_leave_it_in_use(db: Connections) -> None:
    import psycopg

    def fail_midway(conn: Any) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT 1/0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        db.run(fail_midway, generic=True)
    _, mode, idle = db.run(_session, generic=True)
    assert mode == "force_generic_plan" and idle


def test_while_one_thread_uses_it_another_takes_a_pool_connection(db: Connections) -> None:
    inside, release = threading.Event(), threading.Event()

    def hold(conn: Any) -> bool:
        inside.set()
        release.wait(10)
        return db.generic(conn)

    results: list[bool] = []
    holder = threading.Thread(target=lambda: results.append(db.run(hold, generic=True)))
    holder.start()
    try:
        assert inside.wait(10)
        assert not db.run(lambda c: db.generic(c), generic=True)  # not waiting for it
    finally:
        release.set()
        holder.join(10)
    assert results == [True]
