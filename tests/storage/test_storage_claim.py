"""Storage contract: claiming runs (order, readiness, filters, pauses, concurrency limits)."""

from __future__ import annotations

from collections.abc import Callable

from contract_helpers import LEASE, NOW, TASKS, AddRun, Claim, finish

from tether.clock import ManualClock
from tether.engine import states
from tether.models import RunStatus
from tether.storage.base import Storage
from tether.storage.queue_records import QueueRecord
from tether.storage.records import ClaimedRun, ClaimRequest, Finish, RunFilter


def _ids(claimed: list[ClaimedRun]) -> list[str]:
    return [c.record.id for c in claimed]


def test_claim_moves_run_to_executing_with_a_lease(storage: Storage, add_run: AddRun,
                                                   claim: Claim) -> None:
    run = add_run({"x": 1})
    [claimed] = claim("w1", now=NOW + 1)
    assert claimed.record.id == run.id
    assert claimed.resumed is False
    lease = claimed.lease
    assert (lease.run_id, lease.attempt, lease.worker_id) == (run.id, 1, "w1")
    stored = storage.get_run(run.id)
    assert stored is not None
    assert stored.status == RunStatus.EXECUTING
    assert stored.attempts == 1
    assert stored.lease_token == lease.token
    assert stored.worker_id == "w1"
    assert stored.lease_expires_at == NOW + 1 + LEASE
    assert stored.started_at == NOW + 1 and stored.attempt_started_at == NOW + 1
    assert claim("w2", now=NOW + 1) == []


def test_claim_higher_priority_first(add_run: AddRun, claim: Claim) -> None:
    low = add_run(priority=0)
    high = add_run(priority=10)
    mid = add_run(priority=5)
    assert _ids(claim(limit=1)) == [high.id]
    assert _ids(claim(limit=2)) == [mid.id, low.id]


def test_claim_same_priority_oldest_first(add_run: AddRun, claim: Claim) -> None:
    runs = [add_run(i) for i in range(3)]
    assert _ids(claim(limit=3)) == [r.id for r in runs]


def test_claim_respects_available_at(add_run: AddRun, claim: Claim) -> None:
    later = add_run(delay=30)
    assert claim(now=NOW + 29.999) == []
    assert _ids(claim(now=NOW + 30)) == [later.id]


def test_claim_respects_limit(add_run: AddRun, claim: Claim) -> None:
    for i in range(5):
        add_run(i)
    assert len(claim(limit=2)) == 2
    assert len(claim(limit=10)) == 3
    assert claim(limit=10) == []
    assert claim(limit=0) == []


def test_claim_filters_by_task_and_queue(add_run: AddRun, claim: Claim) -> None:
    t = add_run(task="t")
    u = add_run(task="u")
    other = add_run(task="t", queue="other")
    assert _ids(claim(tasks=["u"])) == [u.id]
    assert _ids(claim(tasks=["t"], queues=["other"])) == [other.id]
    assert _ids(claim(tasks=["t", "u"])) == [t.id]


def test_claim_skips_paused_queue(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", None)], NOW)
    run = add_run()
    assert storage.set_queue_paused("q", True, NOW)
    assert claim() == []
    assert storage.set_queue_paused("q", False, NOW)
    assert _ids(claim()) == [run.id]


def test_claim_skips_expired_ttl(add_run: AddRun, claim: Claim) -> None:
    add_run(ttl=10)
    assert claim(now=NOW + 10) == []


def test_queue_concurrency_limit_across_workers(storage: Storage, add_run: AddRun,
                                                claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 2)], NOW)
    runs = [add_run(i) for i in range(5)]
    assert len(claim("w1", limit=1)) == 1
    assert len(claim("w2", limit=10)) == 1  # one slot left, whoever asks
    assert claim("w3", limit=10) == []
    executing = storage.list_runs(RunFilter(status=["EXECUTING"]))
    assert len(executing) == 2 and {r.id for r in executing} <= {r.id for r in runs}


def test_queue_limit_frees_a_slot_when_a_run_finishes(storage: Storage, add_run: AddRun,
                                                      claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 1)], NOW)
    add_run(1)
    second = add_run(2)
    [first] = claim("w1")
    assert claim("w2") == []
    assert finish(storage, first.lease, states.succeeded("1"), NOW + 1) is not None
    assert _ids(claim("w2", now=NOW + 1)) == [second.id]


def test_queue_limit_does_not_touch_other_queues(storage: Storage, add_run: AddRun,
                                                 claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 1), QueueRecord("free", None)], NOW)
    for i in range(3):
        add_run(i)
        add_run(i, queue="free")
    claimed = claim(limit=10)
    assert sorted(c.record.queue for c in claimed) == ["free", "free", "free", "q"]


def test_runs_without_limits_ahead_of_limited_ones_are_taken_in_claim_order(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    """Claim order holds whichever runs come first: runs of queues without limits (PostgreSQL
    takes them without counting places when all the first ones are such runs) and a limited
    queue's runs (then every place is counted)."""
    storage.ensure_queues([QueueRecord("q", 1), QueueRecord("free", None)], NOW)
    free = [add_run(i, queue="free", priority=5) for i in range(2)]
    limited = [add_run(i, priority=1) for i in range(2)]
    assert _ids(claim("w1", limit=2)) == [r.id for r in free]
    assert _ids(claim("w1", limit=10)) == [limited[0].id]  # one place
    later = [add_run(i, queue="free", now=NOW + 1) for i in range(2)]
    urgent = add_run(queue="free", priority=9, now=NOW + 1)
    # the limited queue's place is taken: its run waits, the free ones are taken in order
    assert _ids(claim("w2", limit=10, now=NOW + 1)) == [urgent.id] + [r.id for r in later]


def test_concurrency_limit_applies_per_key(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 1)], NOW)
    a1 = add_run(concurrency_key="a", priority=9)
    add_run(concurrency_key="a", priority=9)
    b1 = add_run(concurrency_key="b")
    none1 = add_run()
    add_run()
    claimed = claim("w1", limit=10)
    # one run per key; the key-less runs form their own group, limited like a key
    assert sorted(_ids(claimed)) == sorted([a1.id, b1.id, none1.id])
    assert claim("w2", limit=10) == []


def test_concurrency_key_limit_counts_runs_of_other_workers(storage: Storage, add_run: AddRun,
                                                            claim: Claim) -> None:
    storage.ensure_queues([QueueRecord("q", 2)], NOW)
    for i in range(3):
        add_run(i, concurrency_key="cust")
    other = add_run(concurrency_key="other")
    assert len(claim("w1", limit=1)) == 1
    second = claim("w2", limit=10)
    assert sorted(c.record.concurrency_key for c in second) == ["cust", "other"]
    assert other.id in _ids(second)
    assert claim("w3", limit=10) == []


def test_many_claims_never_share_a_run(add_run: AddRun, claim: Claim) -> None:
    runs = {add_run(i).id for i in range(20)}
    seen: list[str] = []
    tokens: set[str] = set()
    for n in range(10):
        batch = claim(f"w{n}", limit=3)
        seen += _ids(batch)
        tokens |= {c.lease.token for c in batch}
    assert len(seen) == len(set(seen)) == 20
    assert set(seen) == runs
    assert len(tokens) == 7  # one lease token per claim that got runs (3 * 6 + 2)


def test_claim_in_two_handles_on_one_database(storage_factory: Callable[[], Storage],
                                              add_run: AddRun, storage: Storage) -> None:
    second = storage_factory()
    for i in range(6):
        add_run(i)
    a = storage.claim_runs("w1", ["t"], None, 4, NOW, LEASE)
    b = second.claim_runs("w2", ["t"], None, 4, NOW, LEASE)
    assert len(a) == 4 and len(b) == 2
    assert not set(_ids(a)) & set(_ids(b))


def test_next_ready_at(storage: Storage, add_run: AddRun) -> None:
    assert storage.next_ready_at(["t"], None, NOW) is None
    add_run(delay=50)
    add_run(delay=20)
    assert storage.next_ready_at(["t"], None, NOW) == NOW + 20
    assert storage.next_ready_at(["t"], None, NOW + 20) == NOW + 50


def test_ending_attempts_claims_the_places_they_free(storage: Storage, add_run: AddRun,
                                                     claim: Claim) -> None:
    """A claim made with the ending of attempts takes the slots they free, in priority order."""
    storage.ensure_queues([QueueRecord("q", 2)], NOW)
    for i in range(2):
        add_run(i)
    running = claim("w1", limit=2)
    low, high = add_run("low", priority=1), add_run("high", priority=5)
    assert claim("w2") == []
    ended, claimed = storage.finish_attempts(
        [Finish(c.lease, states.succeeded("1")) for c in running], NOW + 1,
        ClaimRequest("w1", TASKS, None, 5, NOW + 1, LEASE))
    assert [r.status for r in ended if r is not None] == [RunStatus.COMPLETED] * 2
    assert _ids(claimed) == [high.id, low.id]
    assert all(c.record.status == RunStatus.EXECUTING and c.lease.worker_id == "w1"
               for c in claimed)
    assert claim("w2", now=NOW + 1) == []  # both slots are taken again


def test_claim_returns_runs_in_priority_order(add_run: AddRun, claim: Claim) -> None:
    runs = [add_run(i, priority=p) for i, p in enumerate([1, 3, 2, 3, 0])]
    assert _ids(claim(limit=5)) == [runs[i].id for i in (1, 3, 2, 0, 4)]


def test_a_run_taking_a_slot_starts_no_earlier_than_its_last_holder_ended(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    """A worker that read its clock before the commit that freed the slot (claims read the time
    before they are sent) still stores a start no earlier than that end: stored times never show
    more runs executing than the limit. PostgreSQL's slot row remembers when it was freed;
    SQLite reads the app's clock again once it holds the write lock."""
    storage.ensure_queues([QueueRecord("q", 1)], NOW)
    first, second = add_run(1), add_run(2)
    [holder] = claim("w1")
    assert holder.record.id == first.id
    storage.clock = ManualClock(NOW + 6)  # the time a claim reads inside its transaction
    ended = finish(storage, holder.lease, states.succeeded("1"), NOW + 5)
    assert ended is not None and ended.finished_at == NOW + 5
    [taker] = claim("w2", now=NOW + 3)  # its clock was read before that end
    assert taker.record.id == second.id
    stored = storage.get_run(second.id)
    assert stored is not None and stored.started_at is not None
    assert stored.started_at >= NOW + 5 and stored.attempt_started_at == stored.started_at
