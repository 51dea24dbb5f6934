"""Storage contract: flow control in the claim (issue 22). A queue's rate limit (GCRA buckets in
the database: a run held back is not claimed and counts no attempt), its total_concurrency
across keys, its keys taking turns for free places, and the worker's next wake-up when a bucket
has room again. Both backends, with explicit times."""

from __future__ import annotations

import threading
from collections.abc import Callable

from contract_helpers import NOW, AddRun, Claim, finish

from tether.engine import states
from tether.models import RunStatus
from tether.options import Queue, RateLimit
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, ClaimRequest, Finish, RunFilter
from tether.task import queue_record


def _limited(storage: Storage, queue: Queue) -> None:
    storage.ensure_queues([queue_record(queue)], NOW)


def _keys(claimed: list[ClaimedRun]) -> list[str]:
    return [c.record.concurrency_key for c in claimed]


def test_rate_limit_holds_runs_back_without_counting_an_attempt(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    # 10 per second, burst 2: two at once, then one every 0.1 s
    _limited(storage, Queue("q", rate_limit=RateLimit(10, "1s", burst=2)))
    runs = [add_run(i) for i in range(6)]
    assert len(claim(limit=10, now=NOW)) == 2
    assert claim(limit=10, now=NOW + 0.05) == []  # held back: still QUEUED, no attempt
    for run in runs[2:]:
        stored = storage.get_run(run.id)
        assert stored is not None
        assert stored.status == RunStatus.QUEUED and stored.attempts == 0
    assert len(claim("w2", limit=10, now=NOW + 0.1)) == 1  # another worker: the same bucket
    assert claim(limit=10, now=NOW + 0.15) == []
    assert len(claim(limit=10, now=NOW + 0.2)) == 1
    # idle for a while: the bucket fills up to its burst only
    assert len(claim(limit=10, now=NOW + 10)) == 2


def test_rate_limit_with_burst_one_spaces_every_run(storage: Storage, add_run: AddRun,
                                                    claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(4, 2)))  # one per 0.5 s, one at a time
    for i in range(4):
        add_run(i)
    starts = [t for t in (NOW + 0.1 * i for i in range(21)) if claim(limit=5, now=t)]
    assert [round(t - NOW, 3) for t in starts] == [0.0, 0.5, 1.0, 1.5]


def test_a_claim_a_little_late_keeps_the_beat(storage: Storage, add_run: AddRun,
                                              claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(10, "1s")))  # one per 0.1 s, one at once
    for i in range(6):
        add_run(i)
    assert len(claim(limit=10, now=NOW)) == 1
    assert len(claim(limit=10, now=NOW + 0.19)) == 1  # 0.09 s late: the next slot stays at 0.2
    assert len(claim(limit=10, now=NOW + 0.2)) == 1
    assert claim(limit=10, now=NOW + 0.29) == []
    # later than one interval: the beat starts again from now, one at once
    assert len(claim(limit=10, now=NOW + 5)) == 1
    assert claim(limit=10, now=NOW + 5.09) == []
    assert len(claim(limit=10, now=NOW + 5.1)) == 1


def test_rate_limit_per_concurrency_key(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(1, "1m", burst=1, key="concurrency_key")))
    for i in range(3):
        add_run(i, concurrency_key="a")
        add_run(i, concurrency_key="b")
    assert sorted(_keys(claim(limit=10))) == ["a", "b"]  # one per key
    assert claim(limit=10, now=NOW + 59) == []
    assert sorted(_keys(claim(limit=10, now=NOW + 60))) == ["a", "b"]


def test_rate_limit_keyed_by_the_payload(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    from contract_helpers import spec

    from tether.engine.triggering import TriggerOptions, build_run

    limit = RateLimit(1, "1h", burst=1, key=lambda payload: payload["tenant"])
    queue = Queue("q", rate_limit=limit)
    _limited(storage, queue)
    task = spec()
    task = type(task)(task.id, queue, task.retry, None, None)
    for tenant in ("x", "x", "y"):
        new = build_run(task, {"tenant": tenant}, TriggerOptions(), NOW)
        assert new.rate_key == tenant
        storage.create_runs([new], NOW)
    claimed = claim(limit=10)
    assert sorted(c.record.rate_key or "" for c in claimed) == ["x", "y"]
    assert claim(limit=10, now=NOW + 1) == []


def test_rate_limit_of_one_queue_does_not_hold_another(storage: Storage, add_run: AddRun,
                                                       claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(1, "1h", burst=1)))
    for i in range(20):  # more held-back runs than a claim looks at
        add_run(i)
    free = add_run(queue="free")
    assert len(claim(limit=1)) == 1
    assert [c.record.id for c in claim(limit=1)] == [free.id]


def test_a_changed_rate_limit_takes_effect(storage: Storage, add_run: AddRun,
                                           claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(1, "1h", burst=1)))
    for i in range(5):
        add_run(i)
    assert len(claim(limit=10)) == 1
    assert claim(limit=10, now=NOW + 1) == []
    _limited(storage, Queue("q"))  # the newest registration wins: no limit any more
    [stored] = [q for q in storage.list_queues() if q.name == "q"]
    assert stored.rate_limit is None
    assert len(claim(limit=10, now=NOW + 1)) == 4


def test_queue_record_round_trip(storage: Storage) -> None:
    _limited(storage, Queue("q", concurrency=2, total_concurrency=5,
                            rate_limit=RateLimit(30, "1m", burst=3, key="concurrency_key")))
    [stored] = [q for q in storage.list_queues() if q.name == "q"]
    assert (stored.concurrency, stored.total_concurrency) == (2, 5)
    assert (stored.rate_limit, stored.rate_period, stored.rate_burst, stored.rate_scope) == (
        30.0, 60.0, 3, "concurrency_key")


def test_next_ready_at_is_when_the_bucket_has_room(storage: Storage, add_run: AddRun,
                                                   claim: Claim) -> None:
    _limited(storage, Queue("q", rate_limit=RateLimit(2, "1s")))
    for i in range(3):
        add_run(i)
    assert len(claim(limit=10)) == 1
    due = storage.next_ready_at(["t"], None, NOW)
    assert due is not None and abs(due - (NOW + 0.5)) < 1e-6


def test_total_concurrency_caps_all_keys_together(storage: Storage, add_run: AddRun,
                                                  claim: Claim) -> None:
    _limited(storage, Queue("q", concurrency=2, total_concurrency=3))
    for key in "abc":
        for i in range(3):
            add_run(i, concurrency_key=key)
    first = claim(limit=10)
    assert len(first) == 3 and max(_keys(first).count(k) for k in "abc") <= 2
    assert claim("w2", limit=10) == []
    # one ends: its place (per key and in all) is free again
    assert finish(storage, first[0].lease, states.succeeded("1"), NOW + 1) is not None
    [again] = claim("w2", limit=10, now=NOW + 1)
    executing = storage.list_runs(RunFilter(status=["EXECUTING"]))
    assert len(executing) == 3 and again.record.id in {r.id for r in executing}


def test_keys_take_turns_for_free_places(storage: Storage, add_run: AddRun,
                                         claim: Claim) -> None:
    # tenant a queued 30 runs before tenant b's 3: b's do not wait behind all of a's
    _limited(storage, Queue("q", concurrency=10))
    for i in range(30):
        add_run(i, concurrency_key="a")
    for i in range(3):
        add_run(i, concurrency_key="b")
    order: list[str] = []
    now = NOW
    for _ in range(12):
        [one] = claim(limit=1, now=now)
        order.append(one.record.concurrency_key)
        now += 0.01
        assert finish(storage, one.lease, states.succeeded("1"), now) is not None
    assert order[:6] == ["a", "b", "a", "b", "a", "b"]
    assert order[6:] == ["a"] * 6


def test_turns_in_one_claim_and_in_the_refill(storage: Storage, add_run: AddRun,
                                              claim: Claim) -> None:
    _limited(storage, Queue("q", concurrency=5))
    for key in "aaaaaaaaab":
        add_run(concurrency_key=key)
    first = claim(limit=2)
    assert sorted(_keys(first)) == ["a", "b"]
    add_run(concurrency_key="c")
    # the claim made with the commit that ends an attempt goes to the key whose turn it is
    request = ClaimRequest("w1", ["t"], None, 1, NOW + 1, 30.0)
    [ended], claimed = storage.finish_attempts(
        [Finish(first[0].lease, states.succeeded("1"))], NOW + 1, request)
    assert ended is not None
    assert _keys(claimed) == ["c"]  # b was served last: c's turn, before a's eighth run


def test_a_full_key_gives_its_turn_to_the_next(storage: Storage, add_run: AddRun,
                                               claim: Claim) -> None:
    _limited(storage, Queue("q", concurrency=1))
    for key in "aab":
        add_run(concurrency_key=key)
    assert sorted(_keys(claim(limit=10))) == ["a", "b"]
    assert claim(limit=10) == []


def test_concurrent_claims_share_keyed_buckets_exactly(
        storage: Storage, storage_factory: Callable[[], Storage], add_run: AddRun) -> None:
    """Four handles (as four workers) claim at once from 20 per-key buckets whose runs are
    interleaved, so each claim meets the keys in another order: no claim fails (PostgreSQL
    settles buckets in one lock order: no deadlock) and no key gets more than its burst."""
    _limited(storage, Queue("q", rate_limit=RateLimit(5, "1h", burst=5, key="concurrency_key")))
    keys = [f"k{i:02}" for i in range(20)]
    for n in range(8):
        for key in (keys if n % 2 == 0 else reversed(keys)):
            add_run(n, concurrency_key=key)
    handles = [storage_factory() for _ in range(4)]
    claimed: list[ClaimedRun] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(handle: Storage, worker: str) -> None:
        try:
            for _ in range(40):
                got = handle.claim_runs(worker, ["t"], None, 7, NOW, 30.0)
                with lock:
                    claimed.extend(got)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(h, f"w{i}")) for i, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    per_key = {key: 0 for key in keys}
    for c in claimed:
        per_key[c.record.concurrency_key] += 1
    assert per_key == {key: 5 for key in keys}
    assert len({c.record.id for c in claimed}) == len(claimed)
