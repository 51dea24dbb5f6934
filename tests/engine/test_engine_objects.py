"""Large values in an object store: payloads, step results, return values, checkpoints,
metadata and token data over the offload threshold are written to the store before their row,
which keeps a small reference; every reader gets the value back. Run on both databases, with a
directory and with a bucket on a real S3-compatible server (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from objects_support import STORES, dead_store_url, store_url
from tether import Context, ManualClock, Retry, RunStatus, StorageUnavailable, Tether, Worker
from tether.objects import is_reference, open_object_store
from tether.objects.references import reference

BIG = 2_000_000  # bytes of JSON: over the default threshold (512 KiB)


def big(tag: str) -> dict[str, Any]:
    return {"tag": tag, "blob": "y" * BIG}


@pytest.fixture(params=STORES)
def objects_url(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with store_url(str(request.param), tmp_path, monkeypatch) as url:
        yield url


@pytest.fixture
def app(db_url: str, clock: ManualClock, objects_url: str) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock, object_store=objects_url)
    yield app
    app.close()


def test_large_payload_and_step_result_are_offloaded_and_read_back(app: Tether) -> None:
    @app.task
    async def heavy(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        assert payload == big("in")
        result = await ctx.step("make", lambda: big("step"))
        assert result == big("step")
        await ctx.checkpoint(big("state"))
        ctx.metadata["blob"] = "m" * BIG
        return big("out")

    handle = heavy.trigger(big("in"))
    row = record(app, handle.id)
    assert is_reference(row.payload) and len(row.payload) < 300  # the row is small
    assert drain(Worker(app)) == 1
    row = record(app, handle.id)
    assert row.status == RunStatus.COMPLETED
    assert is_reference(row.output) and len(row.output) < 300
    assert is_reference(row.metadata) and is_reference(row.state)
    steps = [s for s in app.storage.load_steps(handle.id).values() if s.name == "make"]
    assert len(steps) == 1 and is_reference(steps[0].output) and len(steps[0].output or "") < 300
    run = app.runs.retrieve(handle.id)  # the SDK reads every value back unchanged
    assert run.payload == big("in") and run.output == big("out")
    assert run.metadata["blob"] == "m" * BIG
    assert handle.result(timeout=5) == big("out")
    ref = reference(row.output or "")
    assert open_object_store(ref["store"]).get(ref["$tether_object"]).startswith(b'{"tag":"out"')


def test_a_replaced_checkpoint_deletes_its_old_object(app: Tether) -> None:
    """A new large checkpoint replaces the old one's object (deleted after the row names the
    new one); a small one replacing a large one too. Nothing else is deleted."""
    seen: list[str | None] = []

    @app.task
    async def stateful(payload: int, ctx: Context) -> int:
        for tag in ("one", "two"):
            await ctx.checkpoint(big(tag))
            seen.append(record(app, ctx.run_id).state)
        await ctx.checkpoint({"small": True})
        seen.append(record(app, ctx.run_id).state)
        return payload

    handle = stateful.trigger(1)
    assert drain(Worker(app)) == 1
    assert handle.result(timeout=5) == 1
    first, second, last = seen
    assert is_reference(first) and is_reference(second) and not is_reference(last)
    store = open_object_store(reference(first or "")["store"])
    left = set(store.keys())
    assert reference(first or "")["$tether_object"] not in left
    assert reference(second or "")["$tether_object"] not in left
    assert record(app, handle.id).state == last


def test_small_values_stay_in_the_row(app: Tether) -> None:
    @app.task
    async def small(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return {"echo": payload}

    handle = small.trigger({"$tether_object": "not-a-reference", "size": 1})
    drain(Worker(app))
    row = record(app, handle.id)
    assert not is_reference(row.payload) and not is_reference(row.output)
    assert app.runs.retrieve(handle.id).payload == {"$tether_object": "not-a-reference", "size": 1}
    assert handle.result(timeout=5) == {"echo": {"$tether_object": "not-a-reference", "size": 1}}


def test_a_replayed_step_reads_its_large_result_from_the_store(app: Tether) -> None:
    calls: list[str] = []

    @app.task(retry=Retry(max_attempts=2, min_delay=0, max_delay=0))
    async def twice(payload: None, ctx: Context) -> int:
        value = await ctx.step("big", lambda: calls.append("big") or big("step"))
        assert value == big("step")
        if len(calls) == 1 and ctx.attempt == 1:
            raise RuntimeError("fail the first attempt after the step")
        return len(value["blob"])

    handle = twice.trigger(None)
    drain(Worker(app))
    assert record(app, handle.id).status == RunStatus.COMPLETED
    assert calls == ["big"]  # the second attempt read the stored result
    assert handle.result(timeout=5) == BIG


def test_large_token_data_is_offloaded(app: Tether) -> None:
    token = app.tokens.create(timeout="1h")
    app.tokens.complete(token.id, big("token"))
    assert app.tokens.retrieve(token.id).output == big("token")
    assert is_reference(app.storage.get_token(token.id).output)  # type: ignore[union-attr]


def test_a_store_that_is_down_fails_the_trigger_and_stores_nothing(
        db_url: str, clock: ManualClock, tmp_path: Path) -> None:
    app = Tether(db_url, clock=clock, object_store=dead_store_url(tmp_path))
    try:
        @app.task
        async def heavy(payload: Any, ctx: Context) -> None:
            return None

        with pytest.raises(StorageUnavailable) as caught:
            heavy.trigger(big("in"))
        message = str(caught.value)
        assert "\n" not in message and "not-a-dir/objects" in message
        assert app.runs.list(limit=10) == []
        heavy.trigger({"small": 1})  # small values do not need the store
        assert len(app.runs.list(limit=10)) == 1
    finally:
        app.close()


def test_a_step_whose_result_cannot_be_stored_fails_its_attempt_and_is_retried(
        db_url: str, clock: ManualClock, tmp_path: Path) -> None:
    app = Tether(db_url, clock=clock, object_store=dead_store_url(tmp_path))
    try:
        @app.task(retry=Retry(max_attempts=3, min_delay=10, max_delay=10))
        async def heavy(payload: Any, ctx: Context) -> int:
            value = await ctx.step("big", lambda: big("step"))
            return len(value["blob"])

        handle = heavy.trigger(None)
        assert drain(Worker(app)) == 1
        assert attempt_outcomes(app, handle.id) == ["FAILED"]
        assert record(app, handle.id).status == RunStatus.QUEUED  # retried like any failure
        assert "cannot be written" in (app.storage.list_attempts(handle.id)[0].error or "")
        (tmp_path / "not-a-dir").unlink()  # the store is back
        clock.advance(11)
        assert drain(Worker(app)) == 1
        assert record(app, handle.id).status == RunStatus.COMPLETED
        assert handle.result(timeout=5) == BIG
    finally:
        app.close()


def test_the_default_store(db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch,
                           tmp_path: Path) -> None:
    monkeypatch.delenv("TETHER_OBJECT_STORE", raising=False)
    app = Tether(db_url)
    if backend == "sqlite":  # a directory beside the database file
        assert app.objects.store is not None
        assert app.objects.store.location == (tmp_path / "tether.db-objects").as_uri()
    else:  # PostgreSQL: values stay in the database
        assert app.objects.store is None
    monkeypatch.setenv("TETHER_OBJECT_STORE", (tmp_path / "env").as_uri())
    assert Tether(db_url).objects.store.location == (tmp_path / "env").as_uri()  # type: ignore[union-attr]
    assert Tether(db_url, offload_threshold="1MB").objects.threshold == 1_000_000
