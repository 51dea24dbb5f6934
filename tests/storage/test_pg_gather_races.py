"""PostgreSQL (READ COMMITTED): a gather parking while one of its tokens is being completed, with
the completion's transaction held open at the worst moment (the race the threaded test in
test_storage_gathers.py meets about once in 25 runs). A gather whose tokens are all completed
is queued without resolve_waits, the safety net: its park takes the tokens' locks, and its
finish re-checks the gather after its commit. SQLite has no such interleaving: one writer at a
time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from contract_helpers import NOW, AddRun, Claim

from tether.engine import states
from tether.engine.waits import NEVER, new_token
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.postgres.store import PostgresStorage
from tether.storage.records import ClaimedRun, Finish, WaitPart

pytestmark = pytest.mark.parametrize("backend", ["postgres"])  # (SQLite: nothing can interleave)


@pytest.fixture
def running(storage: Storage, add_run: AddRun, claim: Claim) -> ClaimedRun:
    add_run({"x": 1})
    [claimed] = claim("w1")
    return claimed


def _token(storage: Storage) -> str:
    return storage.create_token(new_token(None, NOW, None, None, []))[0].id


def _pg(storage: Storage) -> PostgresStorage:
    assert isinstance(storage, PostgresStorage)
    return storage


@contextmanager
def _completion_held_open(storage: Storage, token: str) -> Iterator[int]:
    """complete_token's own statements on a connection of their own, their transaction left
    open until the block ends (then committed). Gives that session's backend pid."""
    conn = _pg(storage).db.connect()
    try:
        with conn.transaction():
            _, changed = _pg(storage)._complete_token(conn, token, '"held"', NOW + 1)
            assert changed
            yield int(conn.info.backend_pid)
    finally:
        conn.close()


def _in_thread(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _waits_for(storage: Storage, pid: int, thread: threading.Thread, timeout: float = 10.0) -> bool:
    """Whether a session is blocked by `pid`'s locks (polled until then, or until `thread` is
    done: then nothing waited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _pg(storage)._one(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))",
            (pid,))
        if row is not None and row["n"] > 0:
            return True
        if not thread.is_alive():
            return False
        time.sleep(0.01)
    raise AssertionError("neither blocked nor done")


def _parts(storage: Storage, run_id: str) -> set[str]:
    rows = _pg(storage)._all("SELECT part FROM wait_parts WHERE run_id = %s", (run_id,))
    return {r["part"] for r in rows}


def _status(storage: Storage, run_id: str) -> str:
    found = storage.get_run(run_id)
    assert found is not None
    return found.status


def _park_and_finish(storage: Storage, running: ClaimedRun, parts: list[WaitPart]) -> None:
    wait = f"gather_{running.record.id}_first"
    due = storage.park_gather(running.lease, wait, parts, [], NOW)
    transition = states.suspended(NOW if due is None else due, wait, "parked on a gather")
    [record], _ = storage.finish_attempts([Finish(running.lease, transition)], NOW)
    assert record is not None


def test_a_park_waits_for_a_completion_under_way_of_its_token(storage: Storage,
                                                              running: ClaimedRun) -> None:
    """The completion updated the token and found no gather waiting for it (the park was not
    stored yet); without the token's lock the park read the token as still waiting, stored its
    part, and nothing ever settled it but resolve_waits."""
    first, second = _token(storage), _token(storage)
    parts = [WaitPart(first, None), WaitPart(second, None)]
    with _completion_held_open(storage, first) as pid:
        parking = _in_thread(lambda: _park_and_finish(storage, running, parts))
        assert _waits_for(storage, pid, parking)  # the park waits for the completion's commit
    parking.join(10)
    assert not parking.is_alive()
    assert _parts(storage, running.record.id) == {second}  # the first was over: not stored
    assert _status(storage, running.record.id) == RunStatus.WAITING
    storage.complete_token(second, '"last"', NOW + 2)
    assert _status(storage, running.record.id) == RunStatus.QUEUED  # without resolve_waits
    assert _parts(storage, running.record.id) == set()


def test_a_finish_that_waited_for_a_completion_re_checks_the_gather(storage: Storage,
                                                                   running: ClaimedRun) -> None:
    """The park is stored; the completion locks the run (still executing: left for the park)
    and holds it while the finish's statement starts, reads the token as waiting, and waits
    for the run's row. Its commit parks the run on a part that is over: the finish settles it
    afterwards."""
    first, second = _token(storage), _token(storage)
    wait = f"gather_{running.record.id}_first"
    due = storage.park_gather(running.lease, wait,
                              [WaitPart(first, None), WaitPart(second, None)], [], NOW)
    assert due == NEVER
    transition = states.suspended(due, wait, "parked on a gather")
    with _completion_held_open(storage, first) as pid:
        finishing = _in_thread(
            lambda: storage.finish_attempts([Finish(running.lease, transition)], NOW))
        assert _waits_for(storage, pid, finishing)  # blocked on the run's row
    finishing.join(10)
    assert not finishing.is_alive()
    assert _status(storage, running.record.id) == RunStatus.WAITING
    assert _parts(storage, running.record.id) == {second}  # the first settled by the re-check
    storage.complete_token(second, '"last"', NOW + 2)
    assert _status(storage, running.record.id) == RunStatus.QUEUED  # without resolve_waits
    assert storage.resolve_waits(NOW + 3) == 0
