"""The step pipeline (storage/pipeline.py) of a storage that has one (PostgreSQL's step writer):
rows of many attempts in one batch, each fenced by its lease; a refused attempt writes nothing
more; metadata rides in order; a broken connection is repaired and the rows sent again."""

from __future__ import annotations

import time

import psycopg
import pytest
from contract_helpers import NOW, AddRun, Claim

from tether.errors import LeaseLost
from tether.storage.base import Storage
from tether.storage.pipeline import StepPipeline
from tether.storage.postgres.connection import split_url
from tether.storage.postgres.store import PostgresStorage
from tether.storage.records import ClaimedRun, Flush, Lease, StepRecord


def _step(key: str, output: str, seq: int, kind: str = "step") -> StepRecord:
    return StepRecord(key, key, kind, "COMPLETED", output, None, 1, NOW, NOW + 1, seq)


@pytest.fixture
def pipeline(storage: Storage) -> StepPipeline:
    if storage.pipeline is None:
        pytest.skip("this storage writes each row before save_step returns")
    return storage.pipeline


@pytest.fixture
def two(add_run: AddRun, claim: Claim) -> list[ClaimedRun]:
    add_run(1)
    add_run(2)
    return claim("w1")


def test_rows_of_attempts_are_written_in_order_and_fenced(
    storage: Storage, pipeline: StepPipeline, two: list[ClaimedRun],
) -> None:
    first, second = two
    forged = Lease(second.lease.run_id, "lease_forged", 1, "w1")
    pipeline.send(first.lease, _step("a", "1", 1), None)
    pipeline.send(forged, _step("x", "9", 1), None)
    pipeline.send(first.lease, _step("a", "2", 1), None)  # the same key again: the last wins
    pipeline.send(second.lease, _step("b", "3", 1), Flush(metadata='{"m":1}'))
    pipeline.send(first.lease, _step("c", "4", 2, kind="once"), None, durable=True)
    pipeline.drain(first.lease)
    pipeline.drain(second.lease)
    assert pipeline.settled(first.lease) and pipeline.settled(second.lease)
    with pytest.raises(LeaseLost):
        pipeline.drain(forged)
    assert isinstance(pipeline.failure(forged), LeaseLost)
    assert pipeline.failure(first.lease) is None
    pipeline.send(forged, _step("y", "9", 2), None)  # after a refused row nothing is sent
    assert not pipeline.settled(forged)
    stored = storage.load_steps(first.record.id)
    assert {k: (r.output, r.seq) for k, r in stored.items()} == {"a": ("2", 1), "c": ("4", 2)}
    assert {k: r.output for k, r in storage.load_steps(second.record.id).items()} == {"b": "3"}
    record = storage.get_run(second.record.id)
    assert record is not None and record.metadata == '{"m":1}'


def test_a_broken_connection_is_repaired_and_the_window_sent_again(
    storage: Storage, pipeline: StepPipeline, two: list[ClaimedRun], db_url: str,
) -> None:
    """A row committed without a WAL flush, then lost (as in a server crash: deleted here), then
    the writer's session ends: the writer reconnects and sends the lost row again, durably,
    before the newer ones."""
    assert isinstance(storage, PostgresStorage)
    lease, run_id = two[0].lease, two[0].record.id
    pipeline.send(lease, _step("a", "1", 1), None)
    deadline = time.monotonic() + 5
    while "a" not in storage.load_steps(run_id) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not pipeline.settled(lease)  # committed, not flushed (no drain asked for it)
    conn = storage.writer._conn
    assert conn is not None
    backend = conn.info.backend_pid
    conninfo, schema = split_url(db_url)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DELETE FROM "{schema}".steps WHERE run_id = %s', (run_id,))
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    pipeline.send(lease, _step("b", "2", 2), None)
    pipeline.send(lease, _step("c", "3", 3), None)
    pipeline.drain(lease)
    assert storage.writer._conn is not None and storage.writer._conn.info.backend_pid != backend
    stored = storage.load_steps(run_id)
    assert {k: (r.output, r.seq) for k, r in stored.items()} == {
        "a": ("1", 1), "b": ("2", 2), "c": ("3", 3)}
    pipeline.forget(lease)
    assert pipeline.settled(lease)
