"""Storage contract: parking runs (WAITING), tokens, child runs with their parent's step row,
the child -> parent wake-up, and debounced triggers racing from several threads."""

from __future__ import annotations

import json
import threading

import pytest
from contract_helpers import NOW, AddRun, Claim, spec

from tether.engine import states
from tether.engine.triggering import TriggerOptions, build_run
from tether.engine.waits import NEVER, new_token
from tether.errors import LeaseLost
from tether.models import RunStatus
from tether.options import Debounce
from tether.storage.base import Storage
from tether.storage.records import ClaimedRun, Finish, Lease, StepRecord


@pytest.fixture
def running(add_run: AddRun, claim: Claim) -> ClaimedRun:
    add_run({"x": 1})
    [claimed] = claim("w1")
    return claimed


def _park(storage: Storage, running: ClaimedRun, until: float, waiting_for: str,
          step: StepRecord | None = None) -> str:
    transition = states.suspended(until, waiting_for, "parked")
    [record], _ = storage.finish_attempts([Finish(running.lease, transition, None, step)], NOW)
    assert record is not None
    return record.status


def _child_step(key: str = "batch") -> StepRecord:
    return StepRecord(key, key, "batch_wait", "STARTED", None, None, 1, NOW, None, 1)


def test_a_parked_sleep_is_queued_when_due_and_keeps_its_attempt(
        storage: Storage, running: ClaimedRun, claim: Claim) -> None:
    sleep = StepRecord("sleep", "sleep", "sleep", "WAITING", '{"until": 1060}', None, 1, NOW,
                       None, 1)
    assert _park(storage, running, NOW + 60, "sleep", sleep) == RunStatus.WAITING
    assert claim("w2", now=NOW + 59) == []
    assert storage.next_ready_at(["t"], None, NOW + 1) == pytest.approx(NOW + 60)
    assert storage.promote_delayed(NOW + 60) == 1
    assert storage.load_steps(running.record.id)["sleep"].status == "COMPLETED"
    [again] = claim("w2", now=NOW + 60)
    assert again.lease.attempt == 1 and again.resumed  # a wait is not an attempt


def test_completing_a_token_queues_the_run_waiting_for_it(
        storage: Storage, running: ClaimedRun) -> None:
    token, created = storage.create_token(new_token(None, NOW, None, "key-1", ["t"]))
    assert created and storage.create_token(new_token(None, NOW, None, "key-1", []))[0].id == token.id
    assert _park(storage, running, NEVER, token.id) == RunStatus.WAITING
    done, changed = storage.complete_token(token.id, '{"ok": true}', NOW + 1)
    assert changed and done is not None and done.status == "COMPLETED"
    assert storage.get_run(running.record.id).status == RunStatus.QUEUED  # type: ignore[union-attr]
    again, changed = storage.complete_token(token.id, '{"ok": false}', NOW + 2)
    assert not changed and again is not None and again.output == '{"ok": true}'
    assert storage.complete_token("waitpoint_unknown", "1", NOW) == (None, False)


def test_a_token_key_with_a_ttl_finds_its_token_until_it_expires(storage: Storage) -> None:
    first, _ = storage.create_token(new_token(None, NOW, None, "k", [], key_ttl=60))
    again, created = storage.create_token(new_token(None, NOW + 59, None, "k", []))
    assert again.id == first.id and not created
    fresh, created = storage.create_token(new_token(None, NOW + 60, None, "k", [], key_ttl=60))
    assert created and fresh.id != first.id and fresh.idempotency_key == "k"
    kept = storage.get_token(first.id)  # the expired token keeps its key, inactive
    assert kept is not None and kept.idempotency_key == "k" and kept.idempotency_active == 0
    assert storage.create_token(new_token(None, NOW + 119, None, "k", []))[0].id == fresh.id
    forever, _ = storage.create_token(new_token(None, NOW, None, "k2", []))
    assert storage.create_token(new_token(None, NOW + 10**9, None, "k2", []))[0].id == forever.id


def test_tokens_list_newest_first_or_newer_than_a_cursor_oldest_first(storage: Storage) -> None:
    ids = [storage.create_token(new_token(None, NOW + i, None, None, []))[0].id for i in range(5)]
    assert [t.id for t in storage.list_tokens(None, 2)] == [ids[4], ids[3]]
    assert [t.id for t in storage.list_tokens(None, 2, before_id=ids[3])] == [ids[2], ids[1]]
    assert [t.id for t in storage.list_tokens(None, 2, after_id=ids[1])] == [ids[2], ids[3]]
    assert [t.id for t in storage.list_tokens(["COMPLETED"], 2, after_id=ids[1])] == []


def test_parking_on_a_token_already_completed_queues_at_once(
        storage: Storage, running: ClaimedRun) -> None:
    token, _ = storage.create_token(new_token(None, NOW, None, None, []))
    storage.complete_token(token.id, "1", NOW)
    assert _park(storage, running, NEVER, token.id) == RunStatus.QUEUED


def test_a_token_times_out_only_after_its_timeout(storage: Storage) -> None:
    token, _ = storage.create_token(new_token(None, NOW, NOW + 10, None, []))
    assert storage.time_out_token(token.id, NOW + 9).status == "WAITING"  # type: ignore[union-attr]
    assert storage.complete_token(token.id, "1", NOW + 10)[1] is False  # too late
    assert storage.time_out_token(token.id, NOW + 10).status == "TIMED_OUT"  # type: ignore[union-attr]


def _children(storage: Storage, parent: ClaimedRun, count: int, group: str) -> list[str]:
    runs = []
    for i in range(count):
        new = build_run(spec("u"), i, TriggerOptions(parent_id=parent.record.id, depth=1), NOW)
        new.resolves = group
        runs.append(new)
    step = _child_step()
    created = storage.create_child_runs(parent.lease, step, runs, NOW)
    assert json.loads(storage.load_steps(parent.record.id)["batch"].output or "")["runs"] == [
        r.id for r, _ in created]
    return [r.id for r, _ in created]


def test_the_last_child_to_end_queues_its_parent(
        storage: Storage, running: ClaimedRun, claim: Claim) -> None:
    kids = _children(storage, running, 3, "group_a")
    assert _park(storage, running, NEVER, "group_a") == RunStatus.WAITING
    claimed = {c.record.id: c for c in claim("w2", tasks=["u"])}
    assert set(claimed) == set(kids)
    storage.transition(kids[0], states.canceled("by hand"), NOW + 1)  # ended from outside
    storage.finish_attempts([Finish(claimed[kids[1]].lease, states.succeeded("1"))], NOW + 1)
    assert storage.get_run(running.record.id).status == RunStatus.WAITING  # type: ignore[union-attr]
    storage.finish_attempts([Finish(claimed[kids[2]].lease, states.succeeded("2"))], NOW + 2)
    parent = storage.get_run(running.record.id)
    assert parent is not None and parent.status == RunStatus.QUEUED
    assert [e.data for e in storage.list_events(parent.id) if e.name == "QUEUED"]
    assert storage.resolve_waits(NOW + 3) == 0  # nothing left for the safety net


def test_children_are_not_stored_without_the_parents_lease(
        storage: Storage, running: ClaimedRun) -> None:
    stale = Lease(running.record.id, "lease_stale", 1, "w1")
    new = build_run(spec("u"), 1, TriggerOptions(parent_id=running.record.id), NOW)
    with pytest.raises(LeaseLost):
        storage.create_child_runs(stale, _child_step(), [new], NOW)
    assert storage.get_run(new.id) is None


def test_parking_on_children_that_all_ended_queues_at_once(
        storage: Storage, running: ClaimedRun, claim: Claim) -> None:
    [kid] = _children(storage, running, 1, "group_b")
    [child] = claim("w2", tasks=["u"])
    storage.finish_attempts([Finish(child.lease, states.succeeded("1"))], NOW)
    assert _park(storage, running, NEVER, "group_b") == RunStatus.QUEUED  # noticed when parking
    assert storage.get_run(kid).status == RunStatus.COMPLETED  # type: ignore[union-attr]
    assert storage.resolve_waits(NOW + 1) == 0


def test_debounced_triggers_from_many_threads_make_one_run(storage: Storage) -> None:
    ids: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def trigger(i: int) -> None:
        try:
            start.wait(5)
            new = build_run(spec("t"), i, TriggerOptions(debounce=Debounce("same", 30)), NOW)
            [(record, _)] = storage.create_runs([new], NOW)
            ids.append(record.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(ids) == 8 and len(set(ids)) == 1


def _force(storage: Storage, sql: str, params: tuple[object, ...]) -> None:
    """Raw SQL (placeholders written `?`), to set up a state no API call leaves behind."""
    if storage.url.startswith("sqlite"):
        with storage.db.write() as conn:  # type: ignore[attr-defined]
            conn.execute(sql, params)
    else:
        storage.db.transaction(  # type: ignore[attr-defined]
            lambda conn: conn.execute(sql.replace("?", "%s"), params))


def test_the_safety_net_queues_a_parent_left_waiting_on_ended_children(
        storage: Storage, running: ClaimedRun, claim: Claim) -> None:
    # the race it covers (PostgreSQL): the parent parks in the same instant its last child ends,
    # and neither transaction sees the other's change
    [kid] = _children(storage, running, 1, "group_c")
    [child] = claim("w2", tasks=["u"])
    storage.finish_attempts([Finish(child.lease, states.succeeded("1"))], NOW)
    assert storage.get_run(kid).status == RunStatus.COMPLETED  # type: ignore[union-attr]
    _force(storage, "UPDATE runs SET status = 'WAITING', waiting_for = ?, lease_token = NULL,"
                    " available_at = ? WHERE id = ?", ("group_c", NEVER, running.record.id))
    assert storage.resolve_waits(NOW + 1) == 1
    assert storage.get_run(running.record.id).status == RunStatus.QUEUED  # type: ignore[union-attr]
    assert storage.resolve_waits(NOW + 2) == 0
