"""Storage contract: paused keys in every claim (a claim, the claim that refills places in the
commit that ends attempts, runs held in line, the hand-over to them), the workers' next wake-up
at a pause's end, and takes from named rate limits (atomic across handles)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from contract_helpers import LEASE, NOW, TASKS, AddRun, Claim

from tether.engine import states
from tether.errors import ConfigurationError, UnknownRateLimit
from tether.storage.base import Storage
from tether.storage.queue_records import QueueRecord
from tether.storage.rates import LimitRecord
from tether.storage.records import ClaimedRun, ClaimRequest, Finish


def _keys(claimed: list[ClaimedRun]) -> list[str]:
    return sorted(c.record.concurrency_key for c in claimed)


@pytest.mark.parametrize("limit", [None, 5])  # an unlimited queue, and one with slot rows
def test_a_paused_key_is_not_claimed_until_its_pause_ends(
        storage: Storage, add_run: AddRun, claim: Claim, limit: int | None) -> None:
    storage.ensure_queues([QueueRecord("q", limit)], NOW)
    for key in ("A", "A", "B", None):
        add_run(concurrency_key=key)
    storage.pause_key("q", "A", NOW + 10, "HTTP 429", NOW)
    assert _keys(claim(now=NOW + 1)) == ["", "B"]
    assert claim(now=NOW + 9.9) == []
    assert storage.next_ready_at(TASKS, None, NOW + 1) == pytest.approx(NOW + 10)
    assert _keys(claim(now=NOW + 10)) == ["A", "A"]


def test_a_pause_keeps_the_later_end_and_only_its_queue(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    a = add_run(concurrency_key="A")
    elsewhere = add_run(concurrency_key="A", queue="other")
    storage.pause_key("q", "A", NOW + 20, "first", NOW)
    storage.pause_key("q", "A", NOW + 5, "shorter", NOW + 1)  # the longer pause stands
    assert [c.record.id for c in claim(now=NOW + 6)] == [elsewhere.id]
    assert storage.next_ready_at(TASKS, None, NOW + 6) == pytest.approx(NOW + 20)
    storage.pause_key("q", "A", NOW + 30, "longer", NOW + 7)
    assert claim(now=NOW + 25) == []
    assert [c.record.id for c in claim(now=NOW + 30)] == [a.id]


def test_the_claim_that_refills_places_skips_paused_keys(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    first = add_run(concurrency_key="B")
    [held] = claim(limit=1)
    add_run(concurrency_key="A")
    b = add_run(concurrency_key="B")
    storage.pause_key("q", "A", NOW + 10, "told to wait", NOW)
    request = ClaimRequest("w1", TASKS, None, 5, NOW + 1, LEASE)
    [ended], taken = storage.finish_attempts([Finish(held.lease, states.succeeded("1"))],
                                             NOW + 1, request)
    assert ended is not None and ended.id == first.id
    assert [c.record.id for c in taken] == [b.id]


def _line_up(storage: Storage, add_run: AddRun, claim: Claim) -> ClaimedRun:
    storage.ensure_queues([QueueRecord("q", 1)], NOW)
    for i in range(4):
        add_run(i, concurrency_key="A")
    [holder] = claim("w1", limit=1)
    return holder


def test_runs_of_a_paused_key_are_not_held_in_line(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    _line_up(storage, add_run, claim)
    storage.pause_key("q", "A", NOW + 10, "told to wait", NOW)
    request = ClaimRequest("w1", TASKS, None, 0, NOW, LEASE, [("q", "A", 2)])
    _, lined = storage.finish_attempts([], NOW, request)
    assert lined == []


def test_a_run_in_line_of_a_paused_key_does_not_take_the_place(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    holder = _line_up(storage, add_run, claim)
    request = ClaimRequest("w1", TASKS, None, 0, NOW, LEASE, [("q", "A", 2)])
    _, lined = storage.finish_attempts([], NOW, request)
    if not lined:
        pytest.skip("this storage holds no runs in line")
    storage.pause_key("q", "A", NOW + 10, "told to wait", NOW)
    [ended], _ = storage.finish_attempts(
        [Finish(holder.lease, states.deferred(NOW + 10, "RetryAfter"), successor=lined[0].lease)],
        NOW + 1)
    assert ended is not None and not ended.handed_over


# -- named rate limits ----------------------------------------------------------------------
def _limit(storage: Storage, limit: float = 10, period: float = 1, burst: float = 1) -> None:
    storage.set_rate_limit(LimitRecord("api", limit, period, burst, NOW))


def test_named_limits_are_stored(storage: Storage) -> None:
    _limit(storage, 500, 60, 20)
    assert storage.get_rate_limit("api") == LimitRecord("api", 500, 60, 20, NOW)
    storage.set_rate_limit(LimitRecord("api", 5, 1, 1, NOW + 1))
    assert storage.list_rate_limits() == [LimitRecord("api", 5, 1, 1, NOW + 1)]
    assert storage.delete_rate_limit("api") and not storage.delete_rate_limit("api")
    assert storage.get_rate_limit("api") is None and storage.list_rate_limits() == []


def test_takes_are_granted_reserved_or_refused(storage: Storage) -> None:
    _limit(storage, 10, 1, 2)  # 0.1 s apart, 2 at once
    assert [storage.take_rate("api", 1, NOW, 0).at for _ in range(2)] == [NOW, NOW]
    reserved = storage.take_rate("api", 1, NOW, 0.5)
    assert reserved.granted and reserved.at == pytest.approx(NOW + 0.1)
    refused = storage.take_rate("api", 2, NOW, 0.1)  # 2 more fit at NOW + 0.3: too far
    assert not refused.granted and refused.at == pytest.approx(NOW + 0.3)
    assert storage.take_rate("api", 2, NOW + 0.3, 0).granted  # nothing was taken by the refusal
    with pytest.raises(ConfigurationError, match="burst is 2"):
        storage.take_rate("api", 3, NOW, 100)
    with pytest.raises(UnknownRateLimit):
        storage.take_rate("other", 1, NOW, 100)


def test_takes_from_many_handles_never_exceed_the_limit(
        storage: Storage, storage_factory: Callable[[], Storage]) -> None:
    _limit(storage, 50, 1, 1)  # one unit every 20 ms
    handles = [storage_factory() for _ in range(4)]
    granted: list[float] = []
    lock = threading.Lock()

    def taker(handle: Storage) -> None:
        for _ in range(10):
            result = handle.take_rate("api", 1, NOW, 10.0)
            assert result.granted
            with lock:
                granted.append(result.at)

    threads = [threading.Thread(target=taker, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    granted.sort()
    assert len(granted) == 40
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) == pytest.approx(0.02)  # each unit its own moment, 20 ms apart
    assert granted[-1] == pytest.approx(NOW + 39 * 0.02)
