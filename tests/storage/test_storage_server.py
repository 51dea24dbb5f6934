"""Storage contract: what the HTTP server keeps (API keys, settings, batches, replies, packets)
and the run edits it makes (tags, metadata, idempotency keys, queue counts, list cursors)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from contract_helpers import NOW, AddRun, Claim, spec

from tether.engine import states
from tether.engine.triggering import TriggerOptions, build_run
from tether.errors import ConfigurationError
from tether.models import RunStatus
from tether.options import Debounce
from tether.storage.base import Storage
from tether.storage.records import NewRun, RunFilter
from tether.storage.server import ApiKeyRecord, BatchRecord, StoredReply


def _key(key_id: str, name: str = "default", at: float = NOW) -> ApiKeyRecord:
    return ApiKeyRecord(id=key_id, name=name, prefix=f"tk_{key_id[-4:]}", hash=f"hash-{key_id}",
                        created_at=at)


def _batch(batch_id: str, count: int = 3, key: str | None = None) -> BatchRecord:
    return BatchRecord(id=batch_id, run_count=count, idempotency_key=key, created_at=NOW,
                       updated_at=NOW)


def _new(payload: Any = None, **options: Any) -> NewRun:
    return build_run(spec("t"), payload, TriggerOptions(**options), NOW)


def _in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads started together; their results by i."""
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


# -- API keys -----------------------------------------------------------------------------------
def test_api_keys_are_found_by_hash_and_listed_oldest_first(storage: Storage) -> None:
    storage.create_api_key(_key("key_b", "ci", at=NOW + 1))
    storage.create_api_key(_key("key_a", "laptop", at=NOW))
    assert storage.find_api_key("hash-key_b") == _key("key_b", "ci", at=NOW + 1)
    assert storage.find_api_key("hash-nope") is None
    assert [k.id for k in storage.list_api_keys()] == ["key_a", "key_b"]


def test_revoked_keys_are_not_found_but_still_listed(storage: Storage) -> None:
    storage.create_api_key(_key("key_a"))
    revoked = storage.revoke_api_key("key_a", NOW + 5)
    assert revoked is not None and revoked.id == "key_a" and revoked.revoked_at == NOW + 5
    assert storage.find_api_key("hash-key_a") is None
    [listed] = storage.list_api_keys()
    assert listed.revoked_at == NOW + 5
    again = storage.revoke_api_key("key_a", NOW + 9)  # revoking twice keeps the first time
    assert again is not None and again.revoked_at == NOW + 5


def test_revoke_by_name(storage: Storage) -> None:
    storage.create_api_key(_key("key_a", "laptop"))
    storage.create_api_key(_key("key_b", "ci"))
    revoked = storage.revoke_api_key("laptop", NOW + 1)
    assert revoked is not None and revoked.id == "key_a"
    assert storage.find_api_key("hash-key_b") is not None
    again = storage.revoke_api_key("laptop", NOW + 2)  # no active key left: the revoked one
    assert again is not None and again.id == "key_a" and again.revoked_at == NOW + 1
    assert storage.revoke_api_key("nobody", NOW) is None


def test_revoke_by_a_name_several_active_keys_share_is_refused(storage: Storage) -> None:
    storage.create_api_key(_key("key_a", "ci"))
    storage.create_api_key(_key("key_b", "ci", at=NOW + 1))
    with pytest.raises(ConfigurationError, match="key_a, key_b"):
        storage.revoke_api_key("ci", NOW + 2)
    assert all(k.revoked_at is None for k in storage.list_api_keys())
    storage.revoke_api_key("key_a", NOW + 3)  # by id, then the name is no longer ambiguous
    revoked = storage.revoke_api_key("ci", NOW + 4)
    assert revoked is not None and revoked.id == "key_b"


def test_touch_api_key_records_last_use(storage: Storage) -> None:
    storage.create_api_key(_key("key_a"))
    storage.touch_api_key("key_a", NOW + 60)
    found = storage.find_api_key("hash-key_a")
    assert found is not None and found.last_used_at == NOW + 60


def test_ensure_setting_keeps_the_first_value(storage: Storage) -> None:
    assert storage.ensure_setting("secret", "one") == "one"
    assert storage.ensure_setting("secret", "two") == "one"
    assert storage.ensure_setting("other", "three") == "three"


def test_ensure_setting_from_racing_handles_agrees(storage_factory: Callable[[], Storage]) -> None:
    handles = [storage_factory() for _ in range(4)]
    for handle in handles:
        handle.migrate()
    values = _in_threads(4, lambda i: handles[i].ensure_setting("signing", f"value-{i}"))
    assert len(set(values)) == 1
    assert handles[0].ensure_setting("signing", "late") == values[0]


# -- batches ------------------------------------------------------------------------------------
def test_create_batch_is_idempotent_on_its_key(storage: Storage) -> None:
    stored, created = storage.create_batch(_batch("batch_1", key="k1"))
    assert created and stored.id == "batch_1" and stored.items_accepted == 0
    again, created = storage.create_batch(_batch("batch_2", key="k1"))
    assert not created and again.id == "batch_1"
    _, created = storage.create_batch(_batch("batch_3"))  # no key: always a new batch
    assert created
    _, created = storage.create_batch(_batch("batch_4"))
    assert created
    assert storage.get_batch("batch_2") is None
    assert storage.get_batch("nope") is None


def test_add_batch_runs_attaches_runs_by_index(storage: Storage) -> None:
    storage.create_batch(_batch("batch_1", count=3))
    news = [_new(i) for i in range(3)]
    out = storage.add_batch_runs("batch_1", list(enumerate(news)), NOW)
    assert [(idx, record.id, created) for idx, record, created in out] == [
        (0, news[0].id, True), (1, news[1].id, True), (2, news[2].id, True)]
    assert storage.batch_run_ids("batch_1") == [n.id for n in news]
    batch = storage.get_batch("batch_1")
    assert batch is not None and batch.items_accepted == 3
    assert storage.batch_of(news[1].id) == "batch_1"
    assert storage.batch_of("run_nope") is None
    assert storage.get_run(news[2].id) is not None


def test_add_batch_runs_twice_creates_each_index_once(storage: Storage) -> None:
    storage.create_batch(_batch("batch_1", count=4))
    first = storage.add_batch_runs("batch_1", [(0, _new(0)), (1, _new(1))], NOW)
    resent = [(1, _new(1)), (2, _new(2)), (3, _new(3))]  # a retried stream overlaps
    second = storage.add_batch_runs("batch_1", resent, NOW + 1)
    assert [(idx, created) for idx, _, created in second] == [(1, False), (2, True), (3, True)]
    assert second[0][1].id == first[1][1].id
    assert storage.get_run(resent[0][1].id) is None  # the duplicate item made no run
    ids = storage.batch_run_ids("batch_1")
    assert ids[:2] == [r.id for _, r, _ in first] and len(set(ids)) == 4
    assert len(storage.list_runs(RunFilter(limit=100))) == 4
    batch = storage.get_batch("batch_1")
    assert batch is not None and batch.items_accepted == 4


def test_add_batch_runs_same_index_twice_in_one_call(storage: Storage) -> None:
    storage.create_batch(_batch("batch_1", count=1))
    a, b = _new("a"), _new("b")
    out = storage.add_batch_runs("batch_1", [(0, a), (0, b)], NOW)
    assert [(idx, r.id, created) for idx, r, created in out] == [(0, a.id, True), (0, a.id, False)]
    assert storage.get_run(b.id) is None


def test_add_batch_runs_racing_handles_create_each_index_once(
        storage: Storage, storage_factory: Callable[[], Storage]) -> None:
    storage.create_batch(_batch("batch_1", count=6))
    handles = [storage_factory() for _ in range(3)]
    results = _in_threads(3, lambda i: handles[i].add_batch_runs(
        "batch_1", [(idx, _new(idx)) for idx in range(6)], NOW))
    created = [(idx, r.id) for out in results for idx, r, was_created in out if was_created]
    assert sorted(idx for idx, _ in created) == list(range(6))
    assert storage.batch_run_ids("batch_1") == [run_id for _, run_id in sorted(created)]
    assert len(storage.list_runs(RunFilter(limit=100))) == 6


def test_idempotency_key_inside_a_batch_returns_the_existing_run(
        storage: Storage, add_run: AddRun) -> None:
    existing = add_run("first", idempotency_key="k1")
    storage.create_batch(_batch("batch_1", count=2))
    out = storage.add_batch_runs("batch_1", [(0, _new("x", idempotency_key="k1")),
                                             (1, _new("y", idempotency_key="k2"))], NOW)
    assert (out[0][1].id, out[0][2]) == (existing.id, False)
    assert out[1][2] and out[1][1].idempotency_key == "k2"
    assert storage.batch_run_ids("batch_1") == [existing.id, out[1][1].id]
    batch = storage.get_batch("batch_1")
    assert batch is not None and batch.items_accepted == 2


def test_batch_items_keep_tags_and_debounce(storage: Storage) -> None:
    storage.create_batch(_batch("batch_1", count=3))
    tagged = _new(1, tags=["b", "a"])
    first, second = _new(2, debounce=Debounce("d", "1m")), _new(3, debounce=Debounce("d", "1m"))
    out = storage.add_batch_runs("batch_1", [(0, tagged), (1, first), (2, second)], NOW)
    assert json.loads(out[0][1].tags) == ["a", "b"]
    assert [r.id for r in storage.list_runs(RunFilter(tag=["a"]))] == [tagged.id]
    assert (out[1][1].id, out[1][2]) == (first.id, True)
    assert (out[2][1].id, out[2][2]) == (first.id, False)  # collapsed into the DELAYED run


def test_add_batch_runs_to_an_unknown_batch_is_an_error(storage: Storage) -> None:
    with pytest.raises(ConfigurationError, match="batch_nope"):
        storage.add_batch_runs("batch_nope", [(0, _new())], NOW)


# -- replies and packets -------------------------------------------------------------------------
def test_save_reply_keeps_the_first_and_prune_forgets_old_ones(storage: Storage) -> None:
    first = StoredReply("req-1", 200, '{"id": "run_1"}', NOW)
    assert storage.save_reply(first) == first
    assert storage.save_reply(StoredReply("req-1", 500, "{}", NOW + 1)) == first
    assert storage.get_reply("req-1") == first
    assert storage.get_reply("req-2") is None
    storage.save_reply(StoredReply("req-2", 201, "{}", NOW + 100))
    assert storage.prune_replies(NOW + 50) == 1
    assert storage.get_reply("req-1") is None and storage.get_reply("req-2") is not None


def test_packets_are_stored_and_replaced(storage: Storage) -> None:
    data = bytes(range(256)) * 10
    storage.put_packet("packets/run_1/payload.json", data, NOW)
    assert storage.get_packet("packets/run_1/payload.json") == data
    storage.put_packet("packets/run_1/payload.json", b"{}", NOW + 1)
    assert storage.get_packet("packets/run_1/payload.json") == b"{}"
    assert storage.get_packet("packets/nope") is None


# -- run edits ----------------------------------------------------------------------------------
def test_add_tags_merges_sorted_without_duplicates(storage: Storage, add_run: AddRun) -> None:
    run = add_run(tags=["b"])
    updated = storage.add_tags(run.id, ["c", "a", "b", "a"], NOW + 1)
    assert updated is not None and json.loads(updated.tags) == ["a", "b", "c"]
    assert updated.updated_at == NOW + 1
    stored = storage.get_run(run.id)
    assert stored is not None and json.loads(stored.tags) == ["a", "b", "c"]
    for tag in ("a", "b", "c"):  # the tag index follows
        assert [r.id for r in storage.list_runs(RunFilter(tag=[tag]))] == [run.id]
    assert storage.add_tags("run_nope", ["a"], NOW) is None


def test_add_tags_allows_at_most_ten(storage: Storage, add_run: AddRun) -> None:
    run = add_run(tags=[f"t{i}" for i in range(8)])
    updated = storage.add_tags(run.id, ["t0", "t8", "t9"], NOW)  # a duplicate does not count
    assert updated is not None and len(json.loads(updated.tags)) == 10
    with pytest.raises(ConfigurationError, match="at most 10 tags"):
        storage.add_tags(run.id, ["t10"], NOW)
    stored = storage.get_run(run.id)
    assert stored is not None and len(json.loads(stored.tags)) == 10
    assert storage.list_runs(RunFilter(tag=["t10"])) == []


def test_set_metadata_replaces_it(storage: Storage, add_run: AddRun) -> None:
    run = add_run(metadata={"a": 1})
    updated = storage.set_metadata(run.id, '{"b": 2}', NOW + 1)
    assert updated is not None and json.loads(updated.metadata) == {"b": 2}
    stored = storage.get_run(run.id)
    assert stored is not None and json.loads(stored.metadata) == {"b": 2}
    assert storage.set_metadata("run_nope", "{}", NOW) is None


def test_a_batch_item_whose_key_found_a_failed_run_makes_a_new_one(
        storage: Storage, add_run: AddRun) -> None:
    """The rule of `create_runs` holds inside a batch; an index that has its run keeps it."""
    failed = add_run("x", idempotency_key="k1")
    assert storage.transition(failed.id, states.expired(), NOW) is not None
    storage.create_batch(_batch("batch_1", 2))
    [(_, fresh, created)] = storage.add_batch_runs("batch_1", [(0, _new("y", idempotency_key="k1"))],
                                                   NOW + 1)
    assert created and fresh.id != failed.id
    [(_, again, created)] = storage.add_batch_runs("batch_1", [(0, _new("z", idempotency_key="k1"))],
                                                   NOW + 2)
    assert not created and again.id == fresh.id  # the stream sent again: its index's run


def test_queue_stats_counts_waiting_and_executing(storage: Storage, add_run: AddRun,
                                                  claim: Claim) -> None:
    assert storage.queue_stats() == {}
    for i in range(3):
        add_run(i, queue="q")
    add_run("later", queue="q2", delay=60)
    done = add_run("done", queue="q3")
    storage.transition(done.id, states.canceled("test"), NOW)
    [claimed] = claim(limit=1, queues=["q"])
    assert claimed.record.queue == "q"
    assert storage.queue_stats() == {"q": (2, 1), "q2": (1, 0)}


# -- list_runs cursors -------------------------------------------------------------------------
def test_list_runs_of_a_batch(storage: Storage, add_run: AddRun) -> None:
    outside = add_run("outside")
    storage.create_batch(_batch("batch_1", count=2))
    out = storage.add_batch_runs("batch_1", [(0, _new(0)), (1, _new(1))], NOW)
    found = storage.list_runs(RunFilter(batch_id="batch_1"))
    assert [r.id for r in found] == [out[1][1].id, out[0][1].id]  # newest first
    assert outside.id not in {r.id for r in found}
    assert storage.list_runs(RunFilter(batch_id="batch_nope")) == []
    only = storage.list_runs(RunFilter(batch_id="batch_1", status=[RunStatus.QUEUED], limit=1))
    assert [r.id for r in only] == [out[1][1].id]


def test_list_runs_newer_than_a_cursor(storage: Storage, add_run: AddRun) -> None:
    ids = [add_run(i).id for i in range(6)]
    page = storage.list_runs(RunFilter(newer_than_id=ids[1], limit=2))
    assert [r.id for r in page] == [ids[3], ids[2]]  # just newer than the cursor, newest first
    rest = storage.list_runs(RunFilter(newer_than_id=ids[3], limit=10))
    assert [r.id for r in rest] == [ids[5], ids[4]]
    assert storage.list_runs(RunFilter(newer_than_id=ids[5])) == []
    back = storage.list_runs(RunFilter(before_id=ids[4], limit=2))  # the cursors agree
    assert [r.id for r in back] == [ids[3], ids[2]]
