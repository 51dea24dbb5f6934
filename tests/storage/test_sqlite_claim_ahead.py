"""SQLite claims read the ready runs before taking the write lock (claim.ready_now), and under
it only claim them (claim.claim_ready): what changed in between must not break a claim."""

from __future__ import annotations

from pathlib import Path

from contract_helpers import LEASE, NOW, TASKS, spec

from tether.engine.triggering import TriggerOptions, build_run
from tether.models import RunStatus
from tether.storage.queue_records import QueueRecord
from tether.storage.records import ClaimedRun, ClaimRequest
from tether.storage.sqlite.claim import Taken, claim_ready, ready_now
from tether.storage.sqlite.store import Q, SQLiteStorage


def _storage(tmp_path: Path, runs: int, queue: str = "q") -> SQLiteStorage:
    storage = SQLiteStorage(tmp_path / "ahead.db")
    storage.migrate()
    storage.create_runs([build_run(spec("t", queue), i, TriggerOptions(), NOW)
                         for i in range(runs)], NOW)
    return storage


def _request(worker: str, limit: int = 10) -> ClaimRequest:
    return ClaimRequest(worker, TASKS, None, limit, NOW + 1, LEASE)


def _claimed(taken: list[Taken]) -> list[ClaimedRun]:
    return [c for t in taken for c in t.runs()]




def test_runs_another_worker_claimed_meanwhile_are_not_taken_again(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 3)
    ready = ready_now(storage.db.get(), _request("w1"))
    assert len(ready) == 3
    other = storage.claim_runs("w2", TASKS, None, 2, NOW + 1, LEASE)  # between read and lock
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    mine = _claimed(taken)
    assert len(other) == 2 and len(mine) == 1
    assert {c.record.id for c in mine} | {c.record.id for c in other} == {r[0] for r in ready}
    assert all(storage.get_run(r[0]).status == RunStatus.EXECUTING for r in ready)  # type: ignore[union-attr]
    storage.close()


def test_a_limit_set_meanwhile_is_counted_under_the_lock(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 5)
    ready = ready_now(storage.db.get(), _request("w1"))
    storage.ensure_queues([QueueRecord("q", 2)], NOW)  # the queue gets a limit of 2
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    assert len(_claimed(taken)) == 2
    storage.close()


def test_a_queue_paused_meanwhile_is_not_claimed(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 2)
    storage.ensure_queues([QueueRecord("q", None)], NOW)
    ready = ready_now(storage.db.get(), _request("w1"))
    assert storage.set_queue_paused("q", True, NOW)
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    assert _claimed(taken) == []
    storage.close()


def test_plain_runs_are_taken_at_once_and_a_limited_queue_s_under_its_limit(tmp_path: Path) -> None:
    """The claim's one statement takes the runs of queues without limits; the runs it leaves
    (a queue given a limit meanwhile) are claimed as the limit allows, in the same transaction."""
    storage = _storage(tmp_path, 3, queue="plain")
    storage.create_runs([build_run(spec("t", "capped"), i, TriggerOptions(), NOW)
                         for i in range(3)], NOW)
    ready = ready_now(storage.db.get(), _request("w1"))
    assert len(ready) == 6
    storage.ensure_queues([QueueRecord("capped", 1)], NOW)
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    queues = sorted(c.record.queue for c in _claimed(taken))
    assert queues == ["capped", "plain", "plain", "plain"]
    storage.close()


def test_a_key_paused_meanwhile_is_not_claimed(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 2)
    ready = ready_now(storage.db.get(), _request("w1"))
    with storage.db.write() as conn:  # back-pressure pauses the key of both runs
        conn.execute("INSERT INTO paused_keys (queue, key, until, reason, created_at)"
                     " VALUES ('q', '', ?, 'test', ?)", (NOW + 60, NOW))
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    assert _claimed(taken) == []
    storage.close()
