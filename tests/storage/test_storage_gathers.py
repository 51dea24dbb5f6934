"""Storage contract: a run parked on several waits at once (a gather, migration 0021). Its
parts are stored fenced by the lease, those over already are left out, the finish takes the
wake time from them, completing a token settles the gather, promote_delayed wakes it by time,
and resolve_waits settles a part whose event was missed."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import NOW, AddRun, Claim

from tether.engine import states
from tether.engine.waits import NEVER, new_token
from tether.errors import LeaseLost
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, Finish, Lease, StepRecord, WaitPart


@pytest.fixture
def running(add_run: AddRun, claim: Claim) -> ClaimedRun:
    add_run({"x": 1})
    [claimed] = claim("w1")
    return claimed


def _gather(running: ClaimedRun) -> str:
    return f"gather_{running.record.id}_sleep"


def _park(storage: Storage, running: ClaimedRun, parts: list[WaitPart],
          now: float = NOW) -> tuple[str, float]:
    """park_gather, then the finish that moves the run to WAITING on the gather."""
    wait = _gather(running)
    sleep = StepRecord("sleep", "sleep", "sleep", "WAITING", '{"until": 1060}', None, 1, now,
                       None, 1)
    due = storage.park_gather(running.lease, wait, parts, [sleep], now)
    transition = states.suspended(now if due is None else due, wait, "parked on a gather")
    [record], _ = storage.finish_attempts([Finish(running.lease, transition)], now)
    assert record is not None
    return record.status, record.available_at


def _token(storage: Storage, timeout_at: float | None = None) -> str:
    return storage.create_token(new_token(None, NOW, timeout_at, None, []))[0].id


def _status(storage: Storage, run_id: str) -> tuple[str, float]:
    found = storage.get_run(run_id)
    assert found is not None
    return found.status, found.available_at


def test_parking_is_fenced_by_the_lease(storage: Storage, running: ClaimedRun) -> None:
    stale = Lease(running.lease.run_id, "lease_stale", 1, "w1")
    with pytest.raises(LeaseLost):
        storage.park_gather(stale, _gather(running), [WaitPart("time:sleep", NOW + 5)], [], NOW)
    assert storage.load_steps(running.record.id) == {}


def test_a_gather_wakes_when_its_last_part_is_over(storage: Storage, running: ClaimedRun,
                                                  claim: Claim) -> None:
    first, second = _token(storage), _token(storage, NOW + 30)
    parts = [WaitPart(first, None), WaitPart(second, NOW + 30), WaitPart("time:sleep", NOW + 60)]
    assert _park(storage, running, parts) == (RunStatus.WAITING, NEVER)
    assert storage.load_steps(running.record.id)["sleep"].status == "WAITING"  # stored with it
    storage.complete_token(first, '"a"', NOW + 1)
    assert _status(storage, running.record.id) == (RunStatus.WAITING, NOW + 60)
    storage.complete_token(second, '"b"', NOW + 2)
    assert _status(storage, running.record.id) == (RunStatus.WAITING, NOW + 60)
    assert storage.promote_delayed(NOW + 59) == 0
    assert storage.promote_delayed(NOW + 60) == 1
    assert _status(storage, running.record.id)[0] == RunStatus.QUEUED
    [again] = claim("w2", now=NOW + 60)
    assert again.resumed and again.lease.attempt == 1


def test_a_token_completed_last_queues_the_gather_at_once(storage: Storage,
                                                          running: ClaimedRun) -> None:
    token = _token(storage)
    assert _park(storage, running, [WaitPart(token, None), WaitPart("time:sleep", NOW + 5)]
                 ) == (RunStatus.WAITING, NEVER)
    assert storage.promote_delayed(NOW + 10) == 0  # the token is not completed
    storage.complete_token(token, '"now"', NOW + 11)
    assert _status(storage, running.record.id) == (RunStatus.QUEUED, NOW + 11)
    reasons = [e.data for e in storage.list_events(running.record.id) if e.name == "QUEUED"]
    assert len(reasons) == 1  # resumed once


def test_what_is_over_already_is_not_waited_for(storage: Storage, running: ClaimedRun) -> None:
    done = _token(storage)
    storage.complete_token(done, '"early"', NOW)
    assert _park(storage, running, [WaitPart(done, None), WaitPart("time:sleep", NOW + 5)]
                 ) == (RunStatus.WAITING, NOW + 5)


def test_a_part_over_before_the_finish_is_settled_by_the_finish(
        storage: Storage, running: ClaimedRun) -> None:
    """A token completed between the gather's park and the commit that moves the run to
    WAITING: SQLite's finish sees it (one writer at a time); on PostgreSQL the completion
    leaves the part of a run about to park, and the finish settles it after its commit (the
    interleavings with open transactions: test_pg_gather_races.py)."""
    token, other = _token(storage), _token(storage)
    wait = _gather(running)
    due = storage.park_gather(running.lease, wait,
                              [WaitPart(token, None), WaitPart(other, None)], [], NOW)
    assert due == NEVER
    storage.complete_token(token, '"meanwhile"', NOW + 1)  # the run is still executing
    transition = states.suspended(due, wait, "parked on a gather")
    [record], _ = storage.finish_attempts([Finish(running.lease, transition)], NOW + 2)
    assert record is not None and record.status == RunStatus.WAITING  # the other token
    assert storage.gather_waits_for(other) and not storage.gather_waits_for(token)
    assert storage.resolve_waits(NOW + 3) == 0  # nothing left for the safety net
    storage.complete_token(other, '"last"', NOW + 4)
    assert _status(storage, running.record.id) == (RunStatus.QUEUED, NOW + 4)
    assert not storage.gather_waits_for(other)


def _raw(storage: Storage, sql: str) -> None:
    """A change behind the store's back (the same text on both backends)."""
    db: Any = getattr(storage, "db", None)
    if hasattr(db, "write"):
        with db.write() as conn:
            conn.execute(sql)
    else:
        storage._tx(lambda conn: conn.execute(sql))  # type: ignore[attr-defined]


def test_resolve_waits_settles_a_part_whose_event_was_missed(storage: Storage,
                                                             running: ClaimedRun) -> None:
    token = _token(storage)
    assert _park(storage, running, [WaitPart(token, None), WaitPart("time:sleep", NOW + 5)]
                 )[0] == RunStatus.WAITING
    # as when the token's completion committed while the gather parked (PostgreSQL's READ
    # COMMITTED): the token is completed, its part is still stored
    _raw(storage, f"UPDATE waitpoints SET status = 'COMPLETED', output = '1' WHERE id = '{token}'")
    assert _status(storage, running.record.id)[0] == RunStatus.WAITING
    assert storage.resolve_waits(NOW + 6) == 1
    assert _status(storage, running.record.id) == (RunStatus.QUEUED, NOW + 6)
    assert storage.resolve_waits(NOW + 7) == 0


def test_the_last_part_over_before_the_finish_queues_the_run_at_once(
        storage: Storage, running: ClaimedRun) -> None:
    token = _token(storage)
    wait = _gather(running)
    assert storage.park_gather(running.lease, wait, [WaitPart(token, None)], [], NOW) == NEVER
    storage.complete_token(token, '"meanwhile"', NOW + 1)  # the run is still executing
    transition = states.suspended(NEVER, wait, "parked on a gather")
    [record], _ = storage.finish_attempts([Finish(running.lease, transition)], NOW + 2)
    assert record is not None  # (PostgreSQL: WAITING as its commit left it, then re-checked)
    assert _status(storage, running.record.id)[0] == RunStatus.QUEUED
    assert not storage.gather_waits_for(token)
    assert storage.resolve_waits(NOW + 3) == 0


def test_gathers_parking_while_their_tokens_complete_all_resume_once(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    """Parks and completions racing from two threads (each gather: two tokens, both completed
    while it parks): after one resolve_waits tick every run is queued, each exactly once."""
    import random
    import threading

    for i in range(30):
        add_run({"i": i})
    runs = claim("w1", limit=30)
    tokens = {r.record.id: (_token(storage), _token(storage)) for r in runs}
    rng = random.Random(7)
    delays = {r.record.id: rng.random() * 0.004 for r in runs}

    def park_all() -> None:
        for r in runs:
            wait = _gather(r)
            first, second = tokens[r.record.id]
            due = storage.park_gather(r.lease, wait,
                                      [WaitPart(first, None), WaitPart(second, None)], [], NOW)
            until = NOW if due is None else due
            storage.finish_attempts([Finish(r.lease, states.suspended(until, wait, "p"))], NOW)

    def complete_all() -> None:
        for r in runs:
            threading.Event().wait(delays[r.record.id])
            for token in tokens[r.record.id]:
                storage.complete_token(token, "1", NOW + 1)

    threads = [threading.Thread(target=park_all), threading.Thread(target=complete_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    storage.resolve_waits(NOW + 2)
    for r in runs:
        assert _status(storage, r.record.id)[0] == RunStatus.QUEUED, r.record.id
        resumed = [e for e in storage.list_events(r.record.id)
                   if e.name == "QUEUED" and "WAITING" in e.data]
        assert len(resumed) <= 1  # (0: queued by the commit that parked it)


def test_a_gather_whose_parts_are_all_over_is_queued_at_once(storage: Storage,
                                                             running: ClaimedRun) -> None:
    """Nothing stored to wait for: the finish queues the run (SQLite in its commit,
    PostgreSQL right after it), no tick of promote_delayed or resolve_waits needed."""
    done, other = _token(storage), _token(storage)
    storage.complete_token(done, '"early"', NOW)
    storage.complete_token(other, '"early too"', NOW)
    parts = [WaitPart(done, None), WaitPart(other, None)]
    assert storage.park_gather(running.lease, _gather(running), parts, [], NOW) is None
    _park(storage, running, parts)
    assert _status(storage, running.record.id) == (RunStatus.QUEUED, NOW)
    assert storage.promote_delayed(NOW) == 0 and storage.resolve_waits(NOW) == 0
