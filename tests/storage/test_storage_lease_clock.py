"""The worker's own clock for its leases (engine/leases.py), against a real database: a lease
is valid until the request that proved it plus the lease less a margin; past that, `confirm`
asks the database once and renews it only if this worker still holds it."""

from __future__ import annotations

import time

from contract_helpers import NOW, AddRun, Claim

from tether.clock import ManualClock
from tether.engine import states
from tether.engine.leases import LeaseClock, margin_for
from tether.storage.base import Storage
from tether.storage.records import Finish, Lease

SHORT = 0.25  # seconds of lease: valid for 0.2 s by the worker's clock


def test_margin_is_a_fifth_of_the_lease_up_to_five_seconds() -> None:
    assert margin_for(2.0) == 0.4
    assert margin_for(30.0) == 5.0
    assert margin_for(300.0) == 5.0


def test_a_lease_is_valid_until_its_time_by_the_workers_clock(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    add_run()
    since = time.monotonic()
    [claimed] = claim("w1", lease=SHORT)
    leases = LeaseClock(storage, ManualClock(NOW), "w1", SHORT)
    assert not leases.valid(claimed.lease)  # unknown until granted
    leases.granted([claimed.lease], since)
    assert leases.valid(claimed.lease)
    time.sleep(SHORT - margin_for(SHORT) + 0.02)
    assert not leases.valid(claimed.lease)
    leases.renewed([claimed.record.id], time.monotonic())
    assert leases.valid(claimed.lease)
    leases.forget(claimed.lease)
    assert not leases.valid(claimed.lease)


def test_confirm_renews_a_lease_still_held(storage: Storage, add_run: AddRun,
                                           claim: Claim) -> None:
    add_run()
    [claimed] = claim("w1", lease=SHORT)
    clock = ManualClock(NOW)
    leases = LeaseClock(storage, clock, "w1", SHORT)
    leases.granted([claimed.lease], time.monotonic() - SHORT)  # already past its time
    assert not leases.valid(claimed.lease)
    clock.advance(5)  # expired by the database's time too, but nobody took it over
    assert leases.confirm(claimed.lease)
    assert leases.valid(claimed.lease)
    stored = storage.get_run(claimed.record.id)
    assert stored is not None and stored.lease_expires_at == NOW + 5 + SHORT


def test_confirm_refuses_a_lease_taken_over(storage: Storage, add_run: AddRun,
                                            claim: Claim) -> None:
    add_run()
    [claimed] = claim("w1", lease=SHORT)
    leases = LeaseClock(storage, ManualClock(NOW + 1), "w1", SHORT)
    leases.granted([claimed.lease], time.monotonic() - SHORT)
    crash = states.handed_back()
    [taken], _ = storage.finish_attempts(
        [Finish(claimed.lease, crash)],
        NOW + 1)
    assert taken is not None
    [again] = claim("w1", now=NOW + 1, lease=SHORT)  # the same worker claims the run again
    assert again.lease.token != claimed.lease.token
    assert not leases.confirm(claimed.lease)  # the old attempt's lease is not the new one's


def test_forget_keeps_a_newer_lease_of_the_same_run(storage: Storage, add_run: AddRun,
                                                    claim: Claim) -> None:
    add_run()
    [claimed] = claim("w1")
    leases = LeaseClock(storage, ManualClock(NOW), "w1", 30)
    leases.granted([claimed.lease], time.monotonic())
    older = Lease(claimed.record.id, "lease_older", 1, "w1")
    leases.forget(older)
    assert leases.valid(claimed.lease)
