"""Retention, run by a real in-process worker on each backend: `app.runs.purge` and the workers'
chore delete exactly the finished runs past their limit with every row that names them; runs
not finished, and finished children of a parent that has not, stay; keys are free again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import drain

from tether import ConfigurationError, Context, ManualClock, Retry, RunStatus, Tether, Worker
from tether.retention import RetentionChore
from tether.storage.base import Storage

DAY = 86400.0
DEPENDENTS = ("attempts", "steps", "events", "run_tags", "waitpoints")


@pytest.fixture
def clock() -> ManualClock:
    # the system's time: run ids are made from it, and a purge walks the ids made before its cutoff
    return ManualClock(time.time())


@pytest.fixture
def app(db_url: str, clock: ManualClock) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock)
    yield app
    app.close()


def count(storage: Storage, table: str, run_ids: list[str]) -> int:
    """Rows of `table` that name one of the runs (read with SQL: nothing may be left over)."""
    if not run_ids:
        return 0
    if hasattr(storage, "path"):  # SQLite
        marks = ",".join("?" * len(run_ids))
        row = storage._read(f"SELECT count(*) FROM {table} WHERE run_id IN ({marks})",  # type: ignore[attr-defined]
                            run_ids).fetchone()
        return int(row[0])
    rows = storage._all(f"SELECT count(*) AS n FROM {table} WHERE run_id = ANY (%s)",  # type: ignore[attr-defined]
                        (run_ids,))
    return int(rows[0]["n"])


def define(app: Tether) -> dict[str, Any]:
    """Tasks whose runs store every kind of row: attempts (one failed), steps, a log line, a
    token they created, a child run (a step and a link), tags."""

    @app.task(retry=Retry(max_attempts=2, min_delay=0, max_delay=0))
    async def full(payload: int, ctx: Context) -> int:
        await ctx.step("double", lambda: payload * 2)
        logging.getLogger("retention-test").warning("run %s logs", ctx.run_id)
        await ctx.create_token(timeout="1h")
        child = await ctx.trigger_and_wait(leaf, payload)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return int(child)

    @app.task
    async def leaf(payload: int) -> int:
        return payload + 1

    @app.task
    async def holder(payload: int, ctx: Context) -> None:
        await ctx.trigger(leaf, payload)  # finishes at once; its parent waits for a token
        await ctx.wait_for_token(await ctx.create_token(timeout="90d"))

    return {"full": full, "leaf": leaf, "holder": holder}


def everything(app: Tether) -> set[str]:
    return {r.id for r in app.runs.list(limit=1000)}


def test_purge_deletes_exactly_the_old_finished_runs_with_their_rows(
    app: Tether, clock: ManualClock,
) -> None:
    tasks = define(app)
    worker = Worker(app)
    old = [tasks["full"].trigger(i, tags=["old"], idempotency_key=f"key-{i}").id for i in range(5)]
    parent = tasks["holder"].trigger(1).id
    drain(worker)
    clock.advance(0.1)
    drain(worker)  # the retries
    children = {r.id for r in app.runs.children(parent)}
    old_all = sorted(everything(app) - {parent} - children)
    assert len(old_all) == 10  # 5 parents, 5 children
    assert all(app.runs.retrieve(i).status == RunStatus.COMPLETED for i in old_all)
    assert app.runs.retrieve(parent).status == RunStatus.WAITING
    for table in DEPENDENTS:
        assert count(app.storage, table, old) > 0, table

    clock.advance(10 * DAY)
    recent = [tasks["leaf"].trigger(i).id for i in range(3)]
    drain(worker)
    delayed = tasks["leaf"].trigger(9, delay="60d").id  # old enough later, never finished
    queued_before = set(everything(app))

    assert app.runs.purge(older_than="7d", dry_run=True) == 10
    assert everything(app) == queued_before  # a dry run deletes nothing
    assert app.runs.purge(older_than="7d") == 10
    left = everything(app)
    assert left == {parent, *children, *recent, delayed}
    for table in DEPENDENTS:
        assert count(app.storage, table, old_all) == 0, table
    assert app.storage.get_runs(old_all) == []
    assert app.runs.purge(older_than="7d") == 0

    # the deleted runs' idempotency keys make new runs
    again = tasks["full"].trigger(0, idempotency_key="key-0").id
    assert again not in old_all and app.runs.retrieve(again).status == RunStatus.QUEUED


def test_purge_filters_by_status_and_task(app: Tether, clock: ManualClock) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def flaky(payload: int) -> int:
        if payload % 2:
            raise ValueError("odd")
        return payload

    @app.task
    async def other(payload: int) -> int:
        return payload

    runs = [flaky.trigger(i).id for i in range(6)] + [other.trigger(i).id for i in range(2)]
    drain(Worker(app))
    clock.advance(2 * DAY)
    assert app.runs.purge(older_than="3d") == 0  # not old enough
    assert app.runs.purge(older_than="1d", status="failed", dry_run=True) == 3
    assert app.runs.purge(older_than="1d", status=["FAILED"], task="flaky") == 3
    assert app.runs.purge(older_than="1d", task=["other"]) == 2
    assert {r.id for r in app.runs.list()} == set(runs[0:6:2])

    with pytest.raises(ConfigurationError, match="older_than must be"):
        app.runs.purge(older_than="soon")
    with pytest.raises(ConfigurationError, match="status 'QUEUED' cannot be purged"):
        app.runs.purge(older_than="1d", status="QUEUED")


def test_the_workers_chore_follows_the_app_and_task_retention(
    db_url: str, clock: ManualClock,
) -> None:
    app = Tether(db_url, clock=clock, retention="7d")
    try:
        @app.task
        async def normal(payload: int) -> int:
            return payload

        @app.task(retention=None)
        async def kept(payload: int) -> int:
            return payload

        @app.task(retention="1d")
        async def brief(payload: int) -> int:
            return payload

        ids = {t.id: [t.trigger(i).id for i in range(3)] for t in (normal, kept, brief)}
        drain(Worker(app))
        chore = RetentionChore(app)
        clock.advance(2 * DAY)
        assert chore(clock.now()) == 3  # brief's
        assert chore(clock.now()) == 0  # the next walk is not due yet: one read
        clock.advance(6 * DAY)
        assert chore(clock.now()) == 3  # normal's, at 8 days
        assert {r.id for r in app.runs.list()} == set(ids["kept"])
        clock.advance(400 * DAY)
        assert chore(clock.now()) == 0
    finally:
        app.close()


def test_bad_retention_settings_are_clear(db_url: str) -> None:
    with pytest.raises(ConfigurationError, match="retention must be positive"):
        Tether(db_url, retention=0)
    with pytest.raises(ConfigurationError, match="retention must be seconds"):
        Tether(db_url, retention="a month")
    app = Tether(db_url)
    with pytest.raises(ConfigurationError, match="retention of task 'x'"):
        app.task(id="x", retention="-1d")(lambda payload: None)
    app.close()


def test_workers_share_one_walk(db_url: str, clock: ManualClock) -> None:
    """Two workers' chores (two storage handles) continue each other's walk: every run is
    deleted once, none is left; with nothing to delete a call is one read."""
    from tether.storage import open_storage
    from tether.storage.retention import PurgeRule

    app = Tether(db_url, clock=clock)
    other = open_storage(db_url)
    try:
        @app.task
        async def job(payload: int) -> int:
            return payload

        ids = [r.id for r in job.batch_trigger(list(range(25)))]
        drain(Worker(app))
        clock.advance(2 * DAY)
        rule = PurgeRule(clock.now() - DAY)
        deleted: list[str] = []
        for turn in range(20):  # bounded: 25 runs, 4 rows a batch
            storage = app.storage if turn % 2 == 0 else other
            batch = storage.purge_due(rule, clock.now(), 30.0, limit=4)
            if batch is None:
                break
            deleted += batch.run_ids
        assert sorted(deleted) == sorted(ids)  # each once
        assert app.storage.purge_due(rule, clock.now(), 30.0, limit=4) is None  # not due
        clock.advance(31)
        batch = other.purge_due(rule, clock.now(), 30.0, limit=4)
        assert batch is not None and batch.runs == [] and batch.next_after is None
    finally:
        other.close()
        app.close()


def test_on_postgres_one_worker_purges_at_a_time(db_url: str, backend: str,
                                                 clock: ManualClock) -> None:
    if backend != "postgres":
        pytest.skip("SQLite's write lock already lets one writer at a time")
    import psycopg

    from tether.storage.postgres.purge import lock_key
    from tether.storage.retention import PurgeRule

    app = Tether(db_url, clock=clock)
    try:
        @app.task
        async def job(payload: int) -> int:
            return payload

        job.trigger(1)
        drain(Worker(app))
        clock.advance(2 * DAY)
        rule = PurgeRule(clock.now() - DAY)
        with psycopg.connect(db_url.split("?")[0]) as holder:  # another worker, mid-batch
            holder.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                           lock_key(app.storage.db.schema))  # type: ignore[attr-defined]
            assert app.storage.purge_due(rule, clock.now(), 30.0) is None
        batch = app.storage.purge_due(rule, clock.now(), 30.0)
        assert batch is not None and len(batch.runs) == 1
    finally:
        app.close()


def test_purge_deletes_the_objects_the_runs_named(db_url: str, clock: ManualClock,
                                                  tmp_path: Path) -> None:
    """Values kept in the object store (a large payload, a large step result) go with their
    runs; a run that is kept keeps its objects."""
    store = f"file://{tmp_path / 'objects'}"
    app = Tether(db_url, clock=clock, object_store=store, offload_threshold=1000)
    try:
        @app.task
        async def big(payload: str, ctx: Context) -> int:
            await ctx.step("echo", lambda: payload * 2)
            return len(payload)

        old = big.trigger("x" * 5000).id
        drain(Worker(app))
        assert app.objects.store is not None
        objects_old = list(app.objects.store.keys(after=""))
        assert len(objects_old) == 2  # the payload and the step result
        clock.advance(2 * DAY)
        kept = big.trigger("y" * 5000).id
        drain(Worker(app))
        assert len(list(app.objects.store.keys(after=""))) == 4
        assert app.runs.purge(older_than="1d") == 1
        left = list(app.objects.store.keys(after=""))
        assert len(left) == 2 and not set(left) & set(objects_old)
        assert app.storage.get_runs([old]) == [] and app.runs.retrieve(kept).payload == "y" * 5000
    finally:
        app.close()


def test_a_fork_keeps_its_large_copied_results_when_its_source_is_purged(
        db_url: str, clock: ManualClock, tmp_path: Path) -> None:
    """A fork's copied step rows name objects of its own (copied when it is made), so purging
    the source run, and its objects, leaves the fork whole: it replays the stored call."""
    app = Tether(db_url, clock=clock, object_store=f"file://{tmp_path / 'objects'}",
                 offload_threshold=1000)
    calls: list[str] = []
    try:
        @app.task(retry=Retry(max_attempts=1))
        async def twice(payload: str, ctx: Context) -> int:
            first = await ctx.step("first", lambda: calls.append("first") or payload * 2)
            return int(await ctx.step("second", lambda: len(first)))

        source = twice.trigger("z" * 5000).id
        drain(Worker(app))
        assert calls == ["first"]
        fork = app.runs.fork(source, from_step="second").id
        clock.advance(2 * DAY)
        assert app.runs.purge(older_than="1d") == 1  # the source (the fork is not finished)
        assert app.storage.get_runs([source]) == []
        drain(Worker(app))
        run = app.runs.retrieve(fork)
        assert run.status == RunStatus.COMPLETED and run.output == 10_000
        assert calls == ["first"]  # replayed from the fork's own copy, not called again
    finally:
        app.close()


def test_the_purge_paces_itself_only_while_there_is_work(app: Tether, clock: ManualClock) -> None:
    """Pacing looks for work: nothing queued or executing is full speed; a run waiting in a
    queue, or executing, makes it wait PAUSE_RATIO times the batch's time. Runs delayed or
    finished are not work."""
    from tether.retention import Pacing

    @app.task
    async def job(payload: int) -> int:
        return payload

    assert Pacing(app.storage).ratio == (3.0 if app.storage.io_bound else 7.0)
    assert Pacing(app.storage).busy() is False  # an empty database
    job.trigger(1, delay="1h")
    assert Pacing(app.storage).busy() is False  # delayed: not work yet
    job.trigger(2)
    pacing = Pacing(app.storage)
    assert pacing.busy() is True  # a run waiting to start
    began = time.monotonic()
    pacing.wait(0.01)
    assert time.monotonic() - began >= 0.01 * pacing.ratio
    drain(Worker(app))
    assert Pacing(app.storage).busy() is False  # done: only the delayed run is left
