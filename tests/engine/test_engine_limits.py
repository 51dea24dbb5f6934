"""What Tether stores of users' JSON, from application code: payloads, metadata and token data
within max_payload_size, outputs (return values, step results, checkpoints) within
max_output_size, and nothing nested deeper than MAX_JSON_DEPTH or holding a lone surrogate.
Refused inputs store nothing; an output over its limit fails the run at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    BatchItem,
    ConfigurationError,
    Context,
    ManualClock,
    OutputTooLarge,
    PayloadError,
    PayloadNotStorable,
    PayloadTooLarge,
    Retry,
    RunStatus,
    SerializationError,
    SyncContext,
    Tether,
    Worker,
)
from tether.limits import MAX_JSON_DEPTH

LIMIT = 10_000  # bytes, for payloads and outputs alike


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def sized(size: int) -> str:
    """A string whose JSON ("x...x", with its quotes) is `size` bytes."""
    return "x" * (size - 2)


@pytest.fixture
def app(db_url: str, clock: ManualClock) -> Iterator[Tether]:
    app = Tether(db_url, clock=clock, max_payload_size=LIMIT, max_output_size=f"{LIMIT}B")
    yield app
    app.close()


@pytest.fixture
def echo(app: Tether) -> Any:
    @app.task(id="echo", retry=Retry(max_attempts=3, min_delay=0, max_delay=0))
    async def echo(payload: Any) -> Any:
        return payload

    return echo


# -- inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "message"), [
    (nested(MAX_JSON_DEPTH + 1), "payload is nested 101 levels deep; Tether stores JSON nested "
                                 "at most 100 levels"),
    (nested(300), "payload is nested 300 levels deep"),
    ([nested(2000)], "nested deeper than the 100 levels"),  # past what Python's encoder can do
    ("\ud800", "payload holds a lone surrogate '\\ud800'"),
    ({"key \udfff": 1}, "lone surrogate '\\udfff'"),
    (["\ud83d\ude00"], "lone surrogate '\\ud83d'"),  # a pair as two code points is two surrogates
    (float("inf"), "payload cannot be stored as JSON"),
])
def test_payloads_that_cannot_be_read_back_are_refused(app: Tether, echo: Any, payload: Any,
                                                       message: str) -> None:
    for trigger in (lambda: echo.trigger(payload), lambda: app.trigger("echo", payload),
                    lambda: echo.batch_trigger([1, payload]), lambda: app.batch_trigger("echo", [payload])):
        with pytest.raises(PayloadNotStorable, match=re.escape(message)):
            trigger()
    assert app.runs.list() == []


def test_what_is_accepted_reads_back_equal(app: Tether, echo: Any) -> None:
    values = [nested(MAX_JSON_DEPTH), "\U0001F600 \x00 \u2028 é", {"a\x00b": [2**64, -(10**30)]},
              1e308, -0.0, "[{\"]}\\"]
    handles = [echo.trigger(value) for value in values]
    drain(Worker(app))
    for value, handle in zip(values, handles, strict=True):
        run = app.runs.retrieve(handle.id)
        assert (run.status, run.payload, run.output) == (RunStatus.COMPLETED, value, value)


def test_payload_over_the_limit_is_refused_with_its_size(app: Tether, echo: Any) -> None:
    echo.trigger(sized(LIMIT))  # exactly at the limit: stored
    with pytest.raises(PayloadTooLarge, match=r"^payload of 10,001 bytes is over the limit of "
                                              r"10,000 bytes \(max_payload_size\)$") as caught:
        echo.trigger(sized(LIMIT + 1))
    assert (caught.value.size, caught.value.limit) == (LIMIT + 1, LIMIT)
    assert isinstance(caught.value, PayloadError)
    with pytest.raises(PayloadTooLarge):
        app.batch_trigger("echo", ["small", BatchItem(sized(LIMIT * 2))])  # the whole batch refused
    with pytest.raises(PayloadTooLarge, match=r"^metadata of"):
        echo.trigger(None, metadata={"note": sized(LIMIT)})
    assert len(app.runs.list()) == 1


def test_child_runs_are_held_to_the_same_rules(app: Tether, echo: Any) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def parent(payload: str, ctx: Context) -> None:
        child = nested(MAX_JSON_DEPTH + 1) if payload == "deep" else sized(LIMIT + 1)
        await ctx.trigger(echo, child)

    deep, large = parent.trigger("deep"), parent.trigger("large")
    drain(Worker(app))
    for handle, kind in ((deep, "PayloadNotStorable"), (large, "PayloadTooLarge")):
        run = app.runs.retrieve(handle.id)
        assert run.status == RunStatus.FAILED and run.error is not None
        assert run.error["type"] == f"tether.errors.{kind}"
    assert app.runs.children(deep.id) == [] and app.runs.children(large.id) == []


@pytest.mark.parametrize("text", ["\ud800", "a\x00b"])
@pytest.mark.parametrize("option", ["tags", "idempotency_key", "concurrency_key", "queue"])
def test_option_text_that_storage_cannot_hold_is_refused(app: Tether, echo: Any, option: str,
                                                         text: str) -> None:
    with pytest.raises(ConfigurationError, match="without NUL characters or lone surrogates"):
        echo.trigger(1, **{option: [text] if option == "tags" else text})
    with pytest.raises(ConfigurationError, match="without NUL characters or lone surrogates"):
        app.tokens.create(tags=[text])
    assert app.runs.list() == [] and app.tokens.list() == []


def test_token_data_over_the_limit_or_too_deep_is_refused(app: Tether) -> None:
    token = app.tokens.create()
    with pytest.raises(PayloadTooLarge, match=r"^token data of 10,001 bytes is over the limit"):
        app.tokens.complete(token.id, sized(LIMIT + 1))
    with pytest.raises(PayloadNotStorable, match="token data is nested 101 levels deep"):
        app.tokens.complete(token.id, nested(MAX_JSON_DEPTH + 1))
    assert app.tokens.retrieve(token.id).status == "WAITING"
    assert app.tokens.complete(token.id, sized(LIMIT)).output == sized(LIMIT)


# -- outputs ------------------------------------------------------------------------------------
def test_outputs_over_the_limit_fail_the_run_at_once(app: Tether) -> None:
    retry = Retry(max_attempts=5, min_delay=0, max_delay=0)

    @app.task(retry=retry)
    async def returns(payload: int) -> str:
        return sized(payload)

    @app.task(retry=retry)
    async def steps(payload: int, ctx: Context) -> None:
        await ctx.step("fetch", sized, payload)

    @app.task(retry=retry)
    def checkpoints(payload: int, ctx: SyncContext) -> None:
        ctx.checkpoint(sized(payload))

    ok = [task.trigger(LIMIT) for task in (returns, steps, checkpoints)]
    over = [task.trigger(LIMIT + 1) for task in (returns, steps, checkpoints)]
    drain(Worker(app))
    assert [app.runs.retrieve(h.id).status for h in ok] == [RunStatus.COMPLETED] * 3
    whats = ["the return value of task 'returns'", "the result of step 'fetch'", "checkpoint state"]
    for handle, what in zip(over, whats, strict=True):
        run = app.runs.retrieve(handle.id)
        assert run.status == RunStatus.FAILED and run.error is not None
        assert run.error["message"] == (f"{what} of 10,001 bytes is over the limit of 10,000 "
                                        "bytes (max_output_size)")
        assert run.error["type"] == "tether.errors.OutputTooLarge"
        assert attempt_outcomes(app, handle.id) == ["FAILED"]  # not retried
    assert issubclass(OutputTooLarge, SerializationError)


def test_outputs_that_cannot_be_read_back_fail_the_attempt(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def deep(payload: None) -> Any:
        return nested(MAX_JSON_DEPTH + 1)

    @app.task(retry=Retry(max_attempts=1))
    async def surrogate(payload: None, ctx: Context) -> None:
        await ctx.step("read", lambda: "\udcff")

    handles = deep.trigger(None), surrogate.trigger(None)
    drain(Worker(app))
    messages = [app.runs.retrieve(h.id).error for h in handles]
    assert messages[0] is not None and "is nested 101 levels deep" in messages[0]["message"]
    assert messages[1] is not None and "lone surrogate '\\udcff'" in messages[1]["message"]


def test_an_exception_message_with_a_lone_surrogate_is_stored_readably(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def fails(payload: None) -> None:
        raise ValueError("cannot decode b'\\xff' -> '\udcff'")

    handle = fails.trigger(None)
    drain(Worker(app))
    error = app.runs.retrieve(handle.id).error
    assert error is not None and error["message"] == "cannot decode b'\\xff' -> '\\udcff'"
    error["traceback"].encode("utf-8")  # readable by every UTF-8 reader


def test_metadata_that_cannot_be_stored_is_not_saved_and_logged(app: Tether) -> None:
    @app.task
    async def progress(payload: None, ctx: Context) -> None:
        ctx.metadata["stage"] = "one"
        await ctx.step("first", lambda: None)
        ctx.metadata["blob"] = sized(LIMIT)
        await ctx.step("second", lambda: None)
        del ctx.metadata["blob"]
        ctx.metadata["deep"] = nested(MAX_JSON_DEPTH)
        await ctx.step("third", lambda: None)

    handle = progress.trigger(None)
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).status == RunStatus.COMPLETED
    assert record(app, handle.id).metadata == '{"stage":"one"}'  # the last metadata it could store
    logged = [e.data["message"] for e in app.runs.trace(handle.id) if e.kind == "log"]
    assert any(m.startswith("metadata not saved: metadata of ") and "(max_payload_size)" in m
               for m in logged), logged
    assert any("metadata not saved: metadata is nested 101 levels deep" in m for m in logged), logged


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "size"), [
    (1, 1), (10_000_000, 10_000_000), ("512", 512), ("512B", 512), ("512KB", 512_000),
    ("10MB", 10_000_000), ("10 mb", 10_000_000), ("1.5MB", 1_500_000), ("1GB", 10**9),
    ("1KiB", 1024), ("10MiB", 10 * 1024**2), ("2GiB", 2 * 1024**3),
])
def test_sizes_are_bytes_or_text(given: int | str, size: int) -> None:
    app = Tether("sqlite:///unused.db", max_payload_size=given, max_output_size=given)
    assert (app.max_payload_size, app.max_output_size) == (size, size)


@pytest.mark.parametrize("given", [0, -5, "", "ten MB", "10 XB", "10MB!", 1.5, True, "0.1B"])
def test_invalid_sizes_are_refused(given: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_output_size"):
        Tether("sqlite:///unused.db", max_output_size=given)


def test_sizes_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Tether("sqlite:///unused.db").max_payload_size == 10_000_000  # the default
    monkeypatch.setenv("TETHER_MAX_PAYLOAD_SIZE", "2MB")
    monkeypatch.setenv("TETHER_MAX_OUTPUT_SIZE", "1MiB")
    app = Tether("sqlite:///unused.db")
    assert (app.max_payload_size, app.max_output_size) == (2_000_000, 1024**2)
    assert Tether("sqlite:///unused.db", max_payload_size="1KB").max_payload_size == 1000
    monkeypatch.setenv("TETHER_MAX_OUTPUT_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="TETHER_MAX_OUTPUT_SIZE: cannot read 'lots'"):
        Tether("sqlite:///unused.db")
