"""Storage contract: a running attempt's writes (fenced by its lease), finishing attempts,
transitions from outside (cancel), lease renewal and expiry, ttl and delayed runs."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from contract_helpers import LEASE, NOW, AddRun, Claim, finish

from tether.engine import states
from tether.errors import LeaseLost
from tether.models import RunStatus
from tether.options import Retry
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, Finish, Flush, Lease, LogLine, StepRecord


def _step(key: str, status: str = "COMPLETED", kind: str = "step", output: str | None = "1",
          attempt: int = 1) -> StepRecord:
    return StepRecord(key, key.split("#")[0], kind, status, output, None, attempt, NOW,
                      NOW + 1 if status != "STARTED" else None)


@pytest.fixture
def running(add_run: AddRun, claim: Claim) -> ClaimedRun:
    add_run({"x": 1})
    [claimed] = claim("w1")
    return claimed


def test_save_step_with_the_lease(storage: Storage, running: ClaimedRun) -> None:
    storage.save_step(running.lease, _step("a", output='{"v":1}'))
    storage.save_step(running.lease, _step("a", "COMPLETED", output='{"v":2}'))  # upsert
    storage.save_step(running.lease, _step("a#2", "STARTED", kind="once", output=None))
    steps = storage.load_steps(running.record.id)
    assert set(steps) == {"a", "a#2"}
    assert steps["a"].output == '{"v":2}' and steps["a"].status == "COMPLETED"
    assert steps["a#2"] == _step("a#2", "STARTED", kind="once", output=None)
    assert storage.load_steps("run_other") == {}


def test_writes_with_a_wrong_lease_raise_lease_lost(storage: Storage, running: ClaimedRun) -> None:
    lease = running.lease
    forged = [Lease(lease.run_id, "lease_forged", lease.attempt, lease.worker_id),
              Lease("run_missing", lease.token, lease.attempt, lease.worker_id)]
    for bad in forged:
        with pytest.raises(LeaseLost):
            storage.save_step(bad, _step("a"))
        with pytest.raises(LeaseLost):
            storage.save_state(bad, '"s"')
        with pytest.raises(LeaseLost):
            storage.flush(bad, Flush(metadata='{"m":1}'))
        assert finish(storage, bad, states.succeeded("1"), NOW) is None
    assert storage.load_steps(lease.run_id) == {}
    stored = storage.get_run(lease.run_id)
    assert stored is not None and stored.status == RunStatus.EXECUTING and stored.state is None


def test_save_state_and_flush(storage: Storage, running: ClaimedRun) -> None:
    lease = running.lease
    log = LogLine(NOW, 1, "INFO", "hello", "tether.run.t")
    storage.save_state(lease, '{"i":3}', Flush(metadata='{"p":0.5}'))
    storage.flush(lease, Flush(logs=[log]))
    stored = storage.get_run(lease.run_id)
    assert stored is not None
    assert json.loads(stored.state or "null") == {"i": 3}
    assert json.loads(stored.metadata) == {"p": 0.5}
    logs = [e for e in storage.list_events(lease.run_id) if e.kind == "log"]
    assert len(logs) == 1 and json.loads(logs[0].data)["message"] == "hello"


@pytest.mark.parametrize("last_writes", [True, False], ids=["last-writes", "transition-alone"])
def test_finish_attempt_completes_and_fences_the_lease(storage: Storage, running: ClaimedRun,
                                                       last_writes: bool) -> None:
    """With last writes, and without (PostgreSQL ends a lone attempt that has none with a
    statement of its own, finish_one)."""
    lease = running.lease
    done = finish(storage, lease, states.succeeded('{"ok":true}'), NOW + 5,
                  Flush(metadata='{"m":2}') if last_writes else None)
    assert done is not None
    assert done.status == RunStatus.COMPLETED and json.loads(done.output or "") == {"ok": True}
    assert done.finished_at == NOW + 5 and done.lease_token is None and done.worker_id is None
    assert json.loads(done.metadata) == ({"m": 2} if last_writes else {})
    assert storage.get_run(lease.run_id) == done
    [attempt] = storage.list_attempts(lease.run_id)
    assert (attempt.number, attempt.status, attempt.worker_id) == (1, "COMPLETED", "w1")
    assert (attempt.started_at, attempt.finished_at) == (NOW, NOW + 5)
    assert finish(storage, lease, states.succeeded("2"), NOW + 6) is None
    with pytest.raises(LeaseLost):
        storage.save_step(lease, _step("late"))


def test_failed_attempt_is_retried_later_and_resumes(storage: Storage, running: ClaimedRun,
                                                     claim: Claim) -> None:
    lease = running.lease
    storage.save_step(lease, _step("a"))
    transition = states.attempt_failed(attempt=1, max_attempts=3, policy=Retry(jitter=False),
                                       error_json='{"message":"boom"}', now=NOW + 1)
    record = finish(storage, lease, transition, NOW + 1)
    assert record is not None
    assert record.status == RunStatus.QUEUED and record.available_at == NOW + 2
    assert json.loads(record.error or "")["message"] == "boom"
    assert claim(now=NOW + 1.5) == []
    [again] = claim("w2", now=NOW + 2)
    assert again.resumed and again.lease.attempt == 2 and again.lease.token != lease.token
    assert again.record.error is None
    assert set(storage.load_steps(again.record.id)) == {"a"}
    assert [a.status for a in storage.list_attempts(lease.run_id)] == ["FAILED"]


def test_handed_back_attempt_is_not_counted(storage: Storage, running: ClaimedRun) -> None:
    record = finish(storage, running.lease, states.handed_back(), NOW + 1)
    assert record is not None
    assert record.status == RunStatus.QUEUED and record.attempts == 0


def test_a_crashed_run_keeps_its_place_in_the_queue(storage: Storage, add_run: AddRun,
                                                    claim: Claim) -> None:
    """Taken over after its worker died, a run goes before the runs queued after it."""
    first = add_run(0)
    [running] = claim("w1", limit=1)
    assert running.record.id == first.id
    later = [add_run(i, now=NOW + 1 + i) for i in range(1, 4)]
    crash = states.crashed(attempt=1, max_attempts=3, error_json="{}")
    assert finish(storage, running.lease, crash, NOW + 10) is not None
    order = [c.record.id for c in claim("w2", limit=4, now=NOW + 10)]
    assert order == [first.id] + [r.id for r in later]


def test_finish_attempts_in_one_batch(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    add_run(1)
    add_run(2)
    first, second = claim(limit=2)
    storage.transition(second.record.id, states.canceled("gone"), NOW)
    stale = Finish(second.lease, states.succeeded("2"))
    (done, lost), _ = storage.finish_attempts([Finish(first.lease, states.succeeded("1")), stale],
                                              NOW + 1)
    assert done is not None and done.id == first.record.id and done.status == RunStatus.COMPLETED
    assert lost is None
    record = storage.get_run(second.record.id)
    assert record is not None and record.status == RunStatus.CANCELED and record.output is None


def test_a_large_batch_of_ends_gives_each_run_its_own_transition(
        storage: Storage, add_run: AddRun, claim: Claim) -> None:
    """Ends of many kinds in one call (more than fit one statement of the SQLite backend): each
    run gets its own status, output, error and time; a lost lease ends nothing."""
    runs = [add_run(i) for i in range(70)]
    claimed = {c.record.id: c for c in claim(limit=70)}
    leases = [claimed[r.id].lease for r in runs]
    storage.transition(runs[5].id, states.canceled("gone"), NOW)
    retry = Retry(max_attempts=3, min_delay=5.0, max_delay=5.0, jitter=False)
    items = []
    for i, lease in enumerate(leases):
        if i % 3 == 0:
            items.append(Finish(lease, states.succeeded(json.dumps({"n": i}))))
        elif i % 3 == 1:
            items.append(Finish(lease, states.attempt_failed(
                attempt=1, max_attempts=3, policy=retry, error_json=json.dumps({"i": i}),
                now=NOW + 1)))
        else:
            items.append(Finish(lease, states.aborted(json.dumps({"i": i}), "no"),
                                Flush(metadata=json.dumps({"m": i}))))
    ended, _ = storage.finish_attempts(items, NOW + 1)
    assert ended[5] is None  # canceled meanwhile: its lease is gone
    for i, record in enumerate(ended):
        if i == 5:
            continue
        assert record is not None and record.id == runs[i].id
        stored = storage.get_run(runs[i].id)
        assert stored is not None and stored.status == record.status
        if i % 3 == 0:
            assert (record.status, record.output, record.finished_at) == (
                RunStatus.COMPLETED, json.dumps({"n": i}), NOW + 1)
        elif i % 3 == 1:
            assert (record.status, record.error, record.available_at) == (
                RunStatus.QUEUED, json.dumps({"i": i}), NOW + 6)
            assert record.finished_at is None and record.lease_token is None
        else:
            assert (record.status, record.metadata) == (RunStatus.FAILED, json.dumps({"m": i}))
        [attempt] = storage.list_attempts(runs[i].id)
        assert (attempt.number, attempt.next_status) == (1, record.status)
    assert [a.status for a in storage.list_attempts(runs[5].id)] == ["CANCELED"]  # not ended twice


def test_cancel_queued_run(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    run = add_run()
    record = storage.transition(run.id, states.canceled("by test"), NOW + 1)
    assert record is not None
    assert record.status == RunStatus.CANCELED and record.finished_at == NOW + 1
    assert claim(now=NOW + 2) == []
    assert storage.list_attempts(run.id) == []
    [event] = [e for e in storage.list_events(run.id) if e.name == "CANCELED"]
    assert json.loads(event.data) == {"reason": "by test", "from": "QUEUED"}
    # final: neither canceled again nor expired
    assert storage.transition(run.id, states.canceled("again"), NOW + 3) is None
    assert storage.transition(run.id, states.expired(), NOW + 3) is None


def test_cancel_executing_run_fences_its_worker(storage: Storage, running: ClaimedRun) -> None:
    lease = running.lease
    record = storage.transition(lease.run_id, states.canceled("stop"), NOW + 1)
    assert record is not None
    assert record.status == RunStatus.CANCELED and record.lease_token is None
    with pytest.raises(LeaseLost):
        storage.save_step(lease, _step("a"))
    assert finish(storage, lease, states.succeeded("1"), NOW + 2) is None
    assert storage.get_run(lease.run_id) == record
    assert [a.status for a in storage.list_attempts(lease.run_id)] == ["CANCELED"]
    assert storage.renew_leases("w1", [lease.run_id], NOW + 2, LEASE) == set()


def test_transition_respects_expect(storage: Storage, add_run: AddRun) -> None:
    run = add_run(delay=60)
    assert storage.transition(run.id, states.rescheduled(NOW + 5), NOW, expect="QUEUED") is None
    moved = storage.transition(run.id, states.rescheduled(NOW + 5), NOW, expect="DELAYED")
    assert moved is not None and moved.status == RunStatus.DELAYED and moved.available_at == NOW + 5
    assert storage.transition("run_missing", states.canceled("x"), NOW) is None


def test_reopen_failed_run_grants_an_attempt(storage: Storage, add_run: AddRun,
                                             claim: Claim) -> None:
    add_run(max_attempts=1)
    [running] = claim()
    failed = states.attempt_failed(attempt=1, max_attempts=1, policy=Retry(), error_json="{}",
                                   now=NOW)
    record = finish(storage, running.lease, failed, NOW)
    assert record is not None and record.status == RunStatus.FAILED
    assert claim(now=NOW + 100) == []
    reopened = storage.transition(running.record.id, states.reopened(NOW + 1, "retry"), NOW + 1)
    assert reopened is not None
    assert reopened.status == RunStatus.QUEUED and reopened.finished_at is None
    assert reopened.max_attempts == 2
    [again] = claim(now=NOW + 1)
    assert again.lease.attempt == 2


def test_renew_leases_returns_only_this_workers_runs(storage: Storage, add_run: AddRun,
                                                     claim: Claim) -> None:
    mine = {add_run(1).id, add_run(2).id}
    claim("w1", limit=2)
    theirs = add_run(3)
    claim("w2", limit=1)
    assert storage.renew_leases("w1", sorted(mine | {theirs.id}), NOW + 10, LEASE) == mine
    for run_id in mine:
        record = storage.get_run(run_id)
        assert record is not None and record.lease_expires_at == NOW + 10 + LEASE
    other = storage.get_run(theirs.id)
    assert other is not None and other.lease_expires_at == NOW + LEASE
    assert storage.renew_leases("w3", sorted(mine), NOW + 10, LEASE) == set()


def test_renew_leases_skips_runs_the_worker_does_not_know(storage: Storage, add_run: AddRun,
                                                          claim: Claim) -> None:
    known, orphan = add_run(1), add_run(2)
    claim("w1", limit=2)  # as if the answer to this claim had reached the worker only in part
    assert storage.renew_leases("w1", [known.id], NOW + 10, LEASE) == {known.id}
    record = storage.get_run(orphan.id)
    assert record is not None and record.lease_expires_at == NOW + LEASE
    assert [r.id for r in storage.expired_leases(NOW + LEASE + 1, [])] == [orphan.id]


def test_expired_leases(storage: Storage, running: ClaimedRun) -> None:
    run_id = running.record.id
    assert storage.expired_leases(NOW + LEASE - 1, []) == []
    assert [r.id for r in storage.expired_leases(NOW + LEASE + 1, [])] == [run_id]
    # a worker known to be dead: its runs at once, and only once when also expired
    assert [r.id for r in storage.expired_leases(NOW + 1, ["w1"])] == [run_id]
    assert [r.id for r in storage.expired_leases(NOW + LEASE + 1, ["w1"])] == [run_id]
    assert storage.expired_leases(NOW + 1, ["w9"]) == []
    storage.renew_leases("w1", [run_id], NOW + 20, LEASE)
    assert storage.expired_leases(NOW + LEASE + 1, []) == []


def test_expire_runs_after_ttl(storage: Storage, add_run: AddRun, claim: Claim) -> None:
    doomed = add_run(ttl=60)
    delayed = add_run(ttl=60, delay=100)  # ttl counts from when it becomes ready
    started = add_run(ttl=60, priority=5)
    claim(limit=1)  # takes `started`: a started run never expires
    assert storage.expire_runs(NOW + 59) == []
    assert storage.expire_runs(NOW + 60) == [doomed.id]
    record = storage.get_run(doomed.id)
    assert record is not None and record.status == RunStatus.EXPIRED and record.finished_at == NOW + 60
    assert storage.expire_runs(NOW + 161) == [delayed.id]
    running = storage.get_run(started.id)
    assert running is not None and running.status == RunStatus.EXECUTING
    assert storage.expire_runs(NOW + 1000) == []


def test_promote_delayed(storage: Storage, add_run: AddRun) -> None:
    run = add_run(delay=30)
    add_run()  # already queued: not counted
    assert storage.promote_delayed(NOW + 29) == 0
    assert storage.promote_delayed(NOW + 30) == 1
    record = storage.get_run(run.id)
    assert record is not None and record.status == RunStatus.QUEUED
    assert storage.promote_delayed(NOW + 31) == 0


def test_reset_once_steps(storage: Storage, running: ClaimedRun) -> None:
    lease = running.lease
    storage.save_step(lease, _step("charge", "STARTED", kind="once", output=None))
    storage.save_step(lease, _step("mail", "COMPLETED", kind="once"))
    storage.save_step(lease, _step("fetch", "STARTED", kind="step", output=None))
    assert storage.reset_once_steps(lease.run_id) == ["charge"]
    assert set(storage.load_steps(lease.run_id)) == {"mail", "fetch"}
    assert storage.reset_once_steps(lease.run_id) == []


def test_a_takeover_of_an_expired_lease_loses_to_a_renewal_that_came_first(
        storage: Storage, running: ClaimedRun) -> None:
    """The reaper reads an expired lease, then its owner renews it before the takeover is
    written: the takeover changes nothing (the owner goes on, and nobody else runs it)."""
    run_id = running.record.id
    later = NOW + LEASE + 1
    [expired] = storage.expired_leases(later, [])
    assert expired.id == run_id
    assert storage.renew_leases("w1", [run_id], later, LEASE) == {run_id}
    crash = states.crashed(attempt=1, max_attempts=3, error_json="{}")  # as the reaper writes
    [taken], _ = storage.finish_attempts(
        [Finish(running.lease, crash, expired_before=later)], later)
    assert taken is None
    stored = storage.get_run(run_id)
    assert stored is not None and stored.status == RunStatus.EXECUTING
    assert stored.lease_token == running.lease.token
    # still expired when written: taken over
    [taken], _ = storage.finish_attempts(
        [Finish(running.lease, crash, expired_before=later + LEASE + 1)], later + LEASE + 1)
    assert taken is not None and taken.status == RunStatus.QUEUED


def test_load_steps_many_reads_the_steps_of_many_runs(storage: Storage, add_run: AddRun,
                                                      claim: Claim) -> None:
    add_run(1)
    add_run(2)
    add_run(3)
    first, second, third = claim("w1")
    storage.save_step(first.lease, _step("a", output='{"v":1}'))
    storage.save_step(first.lease, _step("a#2", "STARTED", kind="once", output=None))
    storage.save_step(second.lease, _step("b", output="2"))
    found = storage.load_steps_many([first.record.id, second.record.id, third.record.id,
                                     "run_missing"])
    assert found == {first.record.id: storage.load_steps(first.record.id),
                     second.record.id: storage.load_steps(second.record.id)}
    assert set(found[first.record.id]) == {"a", "a#2"}
    assert found[second.record.id]["b"].output == "2"
    assert storage.load_steps_many([]) == {}


def test_pending_migrations_reads_which_are_missing(storage_factory: Callable[[], Storage]) -> None:
    fresh = storage_factory()
    pending = fresh.pending_migrations()
    assert pending[0].startswith("0001") and pending == sorted(pending)
    assert fresh.pending_migrations() == pending  # reading applied nothing
    assert fresh.migrate() == pending
    assert fresh.pending_migrations() == []
