"""Storage contract: schema, creating runs, idempotency keys and listing runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from contract_helpers import NOW, AddRun, Claim, finish, spec

from tether.engine import states
from tether.engine.triggering import TriggerOptions, build_run
from tether.models import RunStatus
from tether.options import Retry
from tether.storage.base import Storage
from tether.storage.queue_records import QueueRecord
from tether.storage.records import RunFilter, RunRecord, TaskRecord


def test_migrate_applies_once_and_is_recorded(storage_factory: Callable[[], Storage]) -> None:
    first = storage_factory()
    applied = first.migrate()
    assert applied, "a fresh database has migrations to apply"
    assert applied == sorted(applied)
    assert first.migrate() == []
    # the applied migrations are recorded in the database, not only in memory
    assert storage_factory().migrate() == []


def test_create_and_get_round_trip(storage: Storage) -> None:
    new = build_run(spec("t", "q"), {"n": 1, "s": "é"}, TriggerOptions(
        tags=["b", "a"], metadata={"m": 1}, concurrency_key="c1", priority=7, max_attempts=5,
        ttl=600), NOW)
    [(record, created)] = storage.create_runs([new], NOW)
    assert created
    stored = storage.get_run(new.id)
    assert stored == record
    assert stored.status == RunStatus.QUEUED
    assert (stored.task_id, stored.queue, stored.concurrency_key) == ("t", "q", "c1")
    assert json.loads(stored.payload) == {"n": 1, "s": "é"}
    assert json.loads(stored.metadata) == {"m": 1}
    assert json.loads(stored.tags) == ["a", "b"]
    assert (stored.priority, stored.max_attempts, stored.attempts) == (7, 5, 0)
    assert stored.available_at == NOW and stored.created_at == NOW
    assert stored.expires_at == NOW + 600
    assert stored.lease_token is None and stored.started_at is None and stored.finished_at is None
    run = stored.to_run()
    assert run.payload == {"n": 1, "s": "é"} and run.tags == ["a", "b"]


def test_get_unknown_run_is_none(storage: Storage) -> None:
    assert storage.get_run("run_nope") is None


def test_create_runs_batch_keeps_order(storage: Storage) -> None:
    news = [build_run(spec(), i, TriggerOptions(), NOW) for i in range(5)]
    created = storage.create_runs(news, NOW)
    assert [r.id for r, _ in created] == [n.id for n in news]
    assert all(is_new for _, is_new in created)


def test_delayed_run_is_stored_delayed(add_run: AddRun) -> None:
    record = add_run(delay=60)
    assert record.status == RunStatus.DELAYED and record.available_at == NOW + 60


def test_idempotency_key_returns_existing_run(storage: Storage, add_run: AddRun) -> None:
    first = add_run({"v": 1}, idempotency_key="k")
    again = build_run(spec(), {"v": 2}, TriggerOptions(idempotency_key="k"), NOW + 5)
    [(record, created)] = storage.create_runs([again], NOW + 5)
    assert not created
    assert record.id == first.id
    assert json.loads(record.payload) == {"v": 1}
    assert storage.get_run(again.id) is None
    assert len(storage.list_runs(RunFilter())) == 1


def test_idempotency_key_in_one_batch(storage: Storage) -> None:
    news = [build_run(spec(), i, TriggerOptions(idempotency_key="k"), NOW) for i in range(2)]
    (first, new1), (second, new2) = storage.create_runs(news, NOW)
    assert (new1, new2) == (True, False)
    assert second.id == first.id


def test_idempotency_key_expires(storage: Storage, add_run: AddRun) -> None:
    first = add_run(idempotency_key="k", idempotency_key_ttl=100)
    assert first.idempotency_expires_at == NOW + 100
    before = build_run(spec(), None, TriggerOptions(idempotency_key="k"), NOW + 99)
    [(same, created)] = storage.create_runs([before], NOW + 99)
    assert not created and same.id == first.id
    after = build_run(spec(), None, TriggerOptions(idempotency_key="k"), NOW + 100)
    [(fresh, created)] = storage.create_runs([after], NOW + 100)
    assert created and fresh.id == after.id != first.id
    # the new run now owns the key
    later = build_run(spec(), None, TriggerOptions(idempotency_key="k"), NOW + 150)
    [(owner, created)] = storage.create_runs([later], NOW + 150)
    assert not created and owner.id == fresh.id


def _end(storage: Storage, claim: Claim, run: RunRecord, how: str) -> None:
    """End `run` (just stored, QUEUED) with the status `how`."""
    if how in ("CANCELED", "EXPIRED"):
        transition = states.canceled("by hand") if how == "CANCELED" else states.expired()
        assert storage.transition(run.id, transition, NOW + 1) is not None
        return
    [claimed] = claim(now=NOW + 1)
    transition = {"COMPLETED": states.succeeded("1"),
                  "FAILED": states.aborted('{"message": "no"}', "aborted"),
                  "TIMED_OUT": states.timed_out('{"message": "slow"}', 60)}[how]
    assert finish(storage, claimed.lease, transition, NOW + 2) is not None


@pytest.mark.parametrize(("how", "freed"), [
    ("FAILED", True), ("TIMED_OUT", True), ("EXPIRED", True),
    ("CANCELED", False), ("COMPLETED", False),
])
def test_a_key_whose_run_failed_timed_out_or_expired_is_free_again(
        storage: Storage, add_run: AddRun, claim: Claim, how: str, freed: bool) -> None:
    """Trigger.dev's rule, for every channel: such a key makes a new run (in a batch too);
    the run that had it keeps it for reading; the new run holds the key from then on."""
    first = add_run({"v": 1}, idempotency_key="k")
    _end(storage, claim, first, how)
    assert storage.get_run(first.id).status == how  # type: ignore[union-attr]
    again = build_run(spec(), {"v": 2}, TriggerOptions(idempotency_key="k"), NOW + 3)
    twin = build_run(spec(), {"v": 3}, TriggerOptions(idempotency_key="k"), NOW + 3)
    (record, created), (second, twin_created) = storage.create_runs([again, twin], NOW + 3)
    assert created is freed and not twin_created and second.id == record.id
    assert record.id == (again.id if freed else first.id)
    kept = storage.get_run(first.id)
    assert kept is not None and kept.idempotency_key == "k"
    later = build_run(spec(), {"v": 4}, TriggerOptions(idempotency_key="k"), NOW + 4)
    [(owner, created)] = storage.create_runs([later], NOW + 4)
    assert not created and owner.id == record.id


def test_triggers_racing_with_one_key_make_one_run(storage: Storage) -> None:
    """Many threads trigger with the same key at once: one run, and every caller gets it."""
    answers: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def trigger(i: int) -> None:
        try:
            start.wait(5)
            new = build_run(spec(), i, TriggerOptions(idempotency_key="race"), NOW)
            [(record, created)] = storage.create_runs([new], NOW)
            answers.append((record.id, created))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(answers) == 8 and len({run_id for run_id, _ in answers}) == 1
    assert [created for _, created in answers].count(True) == 1


def test_idempotency_key_is_per_task(add_run: AddRun) -> None:
    a = add_run(task="t", idempotency_key="k")
    b = add_run(task="u", idempotency_key="k")
    assert a.id != b.id


def test_list_runs_newest_first_with_cursor(storage: Storage, add_run: AddRun) -> None:
    ids = [add_run(i).id for i in range(5)]
    listed = [r.id for r in storage.list_runs(RunFilter())]
    assert listed == ids[::-1]
    page1 = [r.id for r in storage.list_runs(RunFilter(limit=2))]
    assert page1 == [ids[4], ids[3]]
    page2 = [r.id for r in storage.list_runs(RunFilter(limit=2, before_id=page1[-1]))]
    assert page2 == [ids[2], ids[1]]
    page3 = [r.id for r in storage.list_runs(RunFilter(limit=2, before_id=page2[-1]))]
    assert page3 == [ids[0]]


def test_a_run_without_tags_has_none(storage: Storage, add_run: AddRun) -> None:
    plain, tagged = add_run(), add_run(tags=["vip"])
    assert plain.tags == "[]"
    stored = storage.get_run(plain.id)
    assert stored is not None and json.loads(stored.tags) == []
    assert {r.id for r in storage.list_runs(RunFilter(tag=["vip"]))} == {tagged.id}


def test_list_runs_filters(storage: Storage, add_run: AddRun) -> None:
    a = add_run(task="t", tags=["user:1"])
    b = add_run(task="u", tags=["user:2", "vip"], queue="other")
    c = add_run(task="t", delay=60, tags=["vip"])

    def ids(**kw: object) -> set[str]:
        return {r.id for r in storage.list_runs(RunFilter(**kw))}  # type: ignore[arg-type]

    assert ids(task_id=["t"]) == {a.id, c.id}
    assert ids(status=["DELAYED"]) == {c.id}
    assert ids(status=["QUEUED", "DELAYED"]) == {a.id, b.id, c.id}
    assert ids(tag=["vip"]) == {b.id, c.id}
    assert ids(tag=["user:1"]) == {a.id}
    assert ids(queue=["other"]) == {b.id}
    assert ids(task_id=["t"], tag=["vip"]) == {c.id}
    assert ids(status=["COMPLETED"]) == set()


def test_tasks_and_queues_registry(storage: Storage) -> None:
    storage.register_tasks([TaskRecord("t", "q", json.dumps({"retry": {}}), "v1", NOW)],
                           [QueueRecord("q", 3)])
    task = storage.get_task("t")
    assert task is not None and (task.queue, task.code_version) == ("q", "v1")
    assert [t.id for t in storage.list_tasks()] == ["t"]
    assert storage.get_task("nope") is None
    storage.ensure_queues([QueueRecord("q", 5), QueueRecord("r", None)], NOW)
    assert {q.name: q.concurrency for q in storage.list_queues()} == {"q": 5, "r": None}
    assert storage.set_queue_paused("q", True, NOW)
    assert not storage.set_queue_paused("missing", True, NOW)
    assert {q.name: q.paused for q in storage.list_queues()} == {"q": True, "r": False}



def test_list_runs_by_each_status_finds_the_runs_in_it(storage: Storage, add_run: AddRun,
                                                       claim: Claim) -> None:
    """Each status alone and in groups (SQLite finds QUEUED, EXECUTING and COMPLETED runs
    without runs_status, migration 0015; the others in it)."""
    done, running, failed, queued = (add_run(task="t") for _ in range(4))
    delayed = add_run(task="u", delay=60)
    by_id = {c.record.id: c for c in claim(limit=3)}
    assert set(by_id) == {done.id, running.id, failed.id}
    finish(storage, by_id[done.id].lease, states.succeeded("1"), NOW + 1)
    finish(storage, by_id[failed.id].lease, states.attempt_failed(
        attempt=1, max_attempts=1, policy=Retry(), error_json='{"message": "no"}', now=NOW + 1),
        NOW + 1)

    def ids(*status: str, task: str | None = None) -> list[str]:
        return [r.id for r in storage.list_runs(RunFilter(
            status=list(status), task_id=[task] if task else None))]

    assert ids("COMPLETED") == [done.id]
    assert ids("EXECUTING") == [running.id]
    assert ids("EXECUTING", task="u") == []
    assert ids("FAILED") == [failed.id]
    assert ids("FAILED", "CANCELED", "TIMED_OUT", "EXPIRED") == [failed.id]
    assert ids("QUEUED") == [queued.id]
    assert ids("DELAYED") == [delayed.id]
    assert ids("DELAYED", task="t") == []
    assert ids("QUEUED", "EXECUTING") == [queued.id, running.id]
    assert ids("COMPLETED", "FAILED") == [failed.id, done.id]
    assert ids("WAITING") == []
