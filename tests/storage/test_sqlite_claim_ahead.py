"""SQLite claims read the ready runs before taking the write lock (claim.ready_now), and under
it only claim them (claim.claim_ready): what changed in between must not break a claim."""

from __future__ import annotations

from pathlib import Path

from contract_helpers import LEASE, NOW, TASKS, spec

from tether.engine.triggering import TriggerOptions, build_run
from tether.models import RunStatus
from tether.storage.queue_records import QueueRecord
from tether.storage.records import ClaimRequest
from tether.storage.sqlite.claim import claim_ready, ready_now
from tether.storage.sqlite.store import Q, SQLiteStorage


def _storage(tmp_path: Path, runs: int, queue: str = "q") -> SQLiteStorage:
    storage = SQLiteStorage(tmp_path / "ahead.db")
    storage.migrate()
    storage.create_runs([build_run(spec("t", queue), i, TriggerOptions(), NOW)
                         for i in range(runs)], NOW)
    return storage


def _request(worker: str, limit: int = 10) -> ClaimRequest:
    return ClaimRequest(worker, TASKS, None, limit, NOW + 1, LEASE)




def test_runs_another_worker_claimed_meanwhile_are_not_taken_again(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 3)
    ready = ready_now(storage.db.get(), _request("w1"))
    assert len(ready) == 3
    other = storage.claim_runs("w2", TASKS, None, 2, NOW + 1, LEASE)  # between read and lock
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    mine = taken.runs()
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
    assert len(taken.runs()) == 2
    storage.close()


def test_a_queue_paused_meanwhile_is_not_claimed(tmp_path: Path) -> None:
    storage = _storage(tmp_path, 2)
    storage.ensure_queues([QueueRecord("q", None)], NOW)
    ready = ready_now(storage.db.get(), _request("w1"))
    assert storage.set_queue_paused("q", True, NOW)
    with storage.db.write() as conn:
        taken = claim_ready(conn, _request("w1"), ready, Q["claim_update"])
    assert taken.runs() == []
    storage.close()
