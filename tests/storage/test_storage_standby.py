"""Storage contract: runs held in line for a full limited queue, and the slot handed over to
them in the commit that ends the attempt before them. The contract lets a storage grant no run
in line (the tests after the first then skip); both backends grant them."""

from __future__ import annotations

import pytest
from contract_helpers import LEASE, NOW, TASKS, AddRun, Claim

from tether.engine import states
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.queue_records import QueueRecord
from tether.storage.records import ClaimedRun, ClaimRequest, Finish, Lease


def _end(storage: Storage, lease: Lease, now: float, successor: Lease | None = None,
         standby: list[tuple[str, str, int]] | None = None, worker: str = "w1"
         ) -> list[ClaimedRun]:
    """End one attempt (handing its slot to `successor`), asking for runs in line."""
    request = ClaimRequest(worker, TASKS, None, 0, now, LEASE, standby or [])
    [record], lined = storage.finish_attempts(
        [Finish(lease, states.succeeded("1"), successor=successor)], now,
        request if standby else None)
    assert record is not None and record.status == RunStatus.COMPLETED
    return lined


def _in_line(storage: Storage, add_run: AddRun, claim: Claim, limit: int = 1
             ) -> tuple[list[ClaimedRun], list[ClaimedRun]]:
    """A queue limited to `limit` with more runs than slots, every slot taken by w1, then w1
    asks for two runs in line (in a call that ends no attempt)."""
    storage.ensure_queues([QueueRecord("q", limit)], NOW)
    for i in range(limit + 4):
        add_run(i)
    holders = claim("w1", limit=limit)
    request = ClaimRequest("w1", TASKS, None, 0, NOW, LEASE, [("q", "", 2)])
    _, lined = storage.finish_attempts([], NOW, request)
    return holders, lined


def test_runs_in_line_are_leased_without_a_slot(storage: Storage, add_run: AddRun,
                                                claim: Claim) -> None:
    holders, lined = _in_line(storage, add_run, claim)
    assert len(holders) == 1
    assert len(lined) in (0, 2)  # granted in full here, or not at all by this storage
    for c in lined:
        assert c.standby
        stored = storage.get_run(c.record.id)
        assert stored is not None and stored.status == RunStatus.EXECUTING
        assert stored.lease_token == c.lease.token and stored.worker_id == "w1"
        assert stored.started_at is None  # it has not started: it holds no place yet
    assert claim("w2", now=NOW + 1) == []  # neither the slot nor the runs in line
    assert storage.queue_stats()["q"] == (4, 1)  # runs in line wait, as far as anyone sees


def _granted(lined: list[ClaimedRun]) -> None:
    if not lined:
        pytest.skip("this storage holds no runs in line")


def test_the_slot_goes_to_the_successor(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    [holder], lined = _in_line(storage, add_run, claim)
    _granted(lined)
    heir = lined[0]
    _end(storage, holder.lease, NOW + 1, successor=heir.lease)
    assert claim("w2", now=NOW + 1) == []  # the heir holds the slot now
    stored = storage.get_run(heir.record.id)
    assert stored is not None and stored.attempt_started_at == NOW + 1  # it started there
    ended = storage.get_run(holder.record.id)
    assert ended is not None and ended.finished_at == stored.started_at == NOW + 1
    _end(storage, heir.lease, NOW + 2)
    assert len(claim("w2", now=NOW + 2)) == 1  # and frees it when it ends


def test_a_canceled_successor_does_not_take_the_slot(storage: Storage, add_run: AddRun,
                                                     claim: Claim) -> None:
    [holder], lined = _in_line(storage, add_run, claim)
    _granted(lined)
    heir = lined[0]
    assert storage.transition(heir.record.id, states.canceled("no"), NOW + 1) is not None
    _end(storage, holder.lease, NOW + 1, successor=heir.lease)
    assert len(claim("w2", now=NOW + 1)) == 1  # the slot went back, not to a canceled run


def test_a_successor_ending_in_the_same_call_passes_the_slot_back(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    [holder], lined = _in_line(storage, add_run, claim)
    _granted(lined)
    heir = lined[0]
    storage.finish_attempts([Finish(holder.lease, states.succeeded("1"), successor=heir.lease),
                             Finish(heir.lease, states.succeeded("2"))], NOW + 1)
    assert len(claim("w2", now=NOW + 1)) == 1


def test_runs_in_line_are_asked_in_the_commit_that_ends_an_attempt(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 2)], NOW)
    runs = [add_run(i) for i in range(6)]
    first, _ = claim("w1", limit=2)
    lined = _end(storage, first.lease, NOW + 1, standby=[("q", "", 2)])
    _granted(lined)
    # the freed slot is not taken by the runs in line: another worker may claim it
    assert [c.record.id for c in lined] == [runs[2].id, runs[3].id]
    assert [c.record.id for c in claim("w2", now=NOW + 1)] == [runs[4].id]
    assert claim("w3", now=NOW + 1) == []


def test_an_attempt_that_lost_its_lease_hands_no_slot_over(storage: Storage, add_run: AddRun,
                                                           claim: Claim) -> None:
    [holder], lined = _in_line(storage, add_run, claim)
    _granted(lined)
    assert storage.transition(holder.record.id, states.canceled("no"), NOW + 1) is not None
    [ended], _ = storage.finish_attempts(
        [Finish(holder.lease, states.succeeded("1"), successor=lined[0].lease)], NOW + 1)
    assert ended is None  # fenced out: the cancel already freed the slot
    assert len(claim("w2", now=NOW + 1)) == 1  # that slot, not taken by the successor


def test_the_commit_says_whether_the_slot_was_handed_over(storage: Storage, add_run: AddRun,
                                                           claim: Claim) -> None:
    """The worker starts a successor only when the commit says it got the slot."""
    holders, lined = _in_line(storage, add_run, claim, limit=2)
    _granted(lined)
    [handed], _ = storage.finish_attempts(
        [Finish(holders[0].lease, states.succeeded("1"), successor=lined[0].lease)], NOW + 1)
    assert handed is not None and handed.handed_over
    assert storage.transition(lined[1].record.id, states.canceled("no"), NOW + 1) is not None
    [refused], _ = storage.finish_attempts(
        [Finish(holders[1].lease, states.succeeded("1"), successor=lined[1].lease)], NOW + 1)
    assert refused is not None and not refused.handed_over  # ended, its slot freed
    [plain], _ = storage.finish_attempts([Finish(lined[0].lease, states.succeeded("1"))], NOW + 2)
    assert plain is not None and not plain.handed_over
