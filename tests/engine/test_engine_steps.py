"""Steps, once-steps, checkpoints and metadata inside a run."""

from __future__ import annotations

import time
from typing import Any

from engine_helpers import drain, record

from tether import Context, Retry, RunStatus, Tether, Worker
from tether.errors import SerializationError

AGAIN = Retry(max_attempts=3, min_delay=0.0, max_delay=0.0)  # retried at once, same clock time


def test_completed_steps_are_not_called_again(app: Tether) -> None:
    calls: list[str] = []

    def fetch(url: str) -> dict[str, str]:
        calls.append(url)
        return {"body": f"<{url}>"}

    @app.task(retry=AGAIN)
    async def crawl(payload: dict[str, str], ctx: Context) -> str:
        page = await ctx.step("fetch", fetch, payload["url"])
        if ctx.attempt == 1:
            raise RuntimeError("after the step")
        return str(page["body"])

    handle = crawl.trigger({"url": "a.test"})
    assert drain(Worker(app)) == 2
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED and run.output == "<a.test>"
    assert calls == ["a.test"]
    steps = app.storage.load_steps(handle.id)
    assert set(steps) == {"fetch"} and steps["fetch"].attempt == 1


def test_repeated_step_names_are_keyed_by_occurrence(app: Tether) -> None:
    calls: list[int] = []

    async def square(n: int) -> int:  # async step functions are awaited
        calls.append(n)
        return n * n

    @app.task(retry=AGAIN)
    async def loop(payload: list[int], ctx: Context) -> list[int]:
        out = [await ctx.step("item", square, n) for n in payload]
        out.append(await ctx.step("other", square, 9))
        if ctx.attempt == 1:
            raise RuntimeError("retry me")
        return out

    handle = loop.trigger([1, 2, 3])
    drain(Worker(app))
    assert app.runs.retrieve(handle.id).output == [1, 4, 9, 81]
    assert calls == [1, 2, 3, 9]
    steps = app.storage.load_steps(handle.id)
    assert set(steps) == {"item", "item#2", "item#3", "other"}
    assert steps["item#2"].output == "4" and steps["item#2"].name == "item"


def test_failed_step_is_recorded_and_run_again(app: Tether) -> None:
    calls: list[int] = []

    def shaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("flaky network")
        return "ok"

    @app.task(retry=AGAIN)
    async def job(payload: Any, ctx: Context) -> str:
        return str(await ctx.step("call", shaky))

    handle = job.trigger(None)
    assert drain(Worker(app)) == 2
    assert app.runs.retrieve(handle.id).output == "ok" and len(calls) == 2
    step = app.storage.load_steps(handle.id)["call"]
    assert step.status == "COMPLETED" and step.attempt == 2


def test_step_level_retry_stays_in_one_attempt(app: Tether) -> None:
    calls: list[int] = []

    def shaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("again")
        return len(calls)

    @app.task(retry=Retry(max_attempts=1))
    async def job(payload: Any, ctx: Context) -> int:
        return int(await ctx.step("call", shaky, retry=Retry(max_attempts=3, min_delay=0.0,
                                                              max_delay=0.0)))

    handle = job.trigger(None)
    assert drain(Worker(app)) == 1
    run = app.runs.retrieve(handle.id)
    assert (run.status, run.output, run.attempts) == (RunStatus.COMPLETED, 3, 1)


def test_once_runs_once_across_attempts(app: Tether) -> None:
    sent: list[str] = []
    keys: set[str] = set()

    @app.task(retry=AGAIN)
    async def notify(payload: str, ctx: Context) -> str:
        keys.add(ctx.idempotency_key_for("email"))
        receipt = await ctx.once("email", lambda to: sent.append(to) or f"sent:{to}", payload)
        if ctx.attempt < 3:
            raise RuntimeError("later failure")
        return str(receipt)

    handle = notify.trigger("a@b.test")
    assert drain(Worker(app)) == 3
    assert app.runs.retrieve(handle.id).output == "sent:a@b.test"
    assert sent == ["a@b.test"]
    assert keys == {f"{handle.id}:email"}  # stable across attempts


def test_checkpoint_state_survives_attempts(app: Tether) -> None:
    seen: list[Any] = []

    @app.task(retry=AGAIN)
    async def agent(payload: Any, ctx: Context) -> list[str]:
        seen.append(ctx.state)
        history = list(ctx.state or [])
        history.append(f"turn{ctx.attempt}")
        await ctx.checkpoint(history)
        assert ctx.state == history
        if ctx.attempt < 3:
            raise RuntimeError("interrupted")
        return history

    handle = agent.trigger(None)
    drain(Worker(app))
    assert seen == [None, ["turn1"], ["turn1", "turn2"]]
    assert app.runs.retrieve(handle.id).output == ["turn1", "turn2", "turn3"]


def test_metadata_is_persisted(app: Tether) -> None:
    @app.task
    async def progress(payload: Any, ctx: Context) -> None:
        assert ctx.metadata == {"source": "upload"}
        ctx.metadata["progress"] = 0.5
        await ctx.step("half", lambda: 1)
        ctx.metadata.update(progress=1.0)
        ctx.metadata.increment("ticks")
        ctx.metadata.increment("ticks", 2)

    handle = progress.trigger(None, metadata={"source": "upload"})
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.COMPLETED
    assert run.metadata == {"source": "upload", "progress": 1.0, "ticks": 3}


def test_metadata_is_saved_at_a_step_boundary(app: Tether) -> None:
    """With the step's row: at once on SQLite; on PostgreSQL the row and the metadata are
    written in the step pipeline, moments after the step returned."""
    during: list[Any] = []

    def stored_metadata(run_id: str) -> str:
        deadline = time.monotonic() + 2.0
        while (metadata := record(app, run_id).metadata) == "{}" and time.monotonic() < deadline:
            time.sleep(0.005)
        return metadata

    @app.task
    async def watched(payload: Any, ctx: Context) -> None:
        ctx.metadata["stage"] = "one"
        await ctx.step("first", lambda: None)
        during.append(stored_metadata(ctx.run_id))

    watched.trigger(None)
    drain(Worker(app))
    assert during == ['{"stage":"one"}']


def test_step_result_that_is_not_json_fails_the_attempt(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def bad_step(payload: Any, ctx: Context) -> None:
        await ctx.step("weird", lambda: {1, 2})

    handle = bad_step.trigger(None)
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.error is not None
    assert run.error["type"] == f"{SerializationError.__module__}.SerializationError"
    assert "step 'weird'" in run.error["message"]


def test_logs_emitted_during_a_run_are_attached_to_it(app: Tether) -> None:
    import logging

    @app.task
    async def chatty(payload: str, ctx: Context) -> None:
        ctx.logger.info("hello %s", payload)
        await ctx.step("between", lambda: None)
        logging.getLogger("some.library").warning("from a library")

    handle = chatty.trigger("bob")
    logging.getLogger("outside").warning("not during a run")
    drain(Worker(app))
    logs = [(e.name, e.data["message"]) for e in app.runs.trace(handle.id) if e.kind == "log"]
    assert logs == [("INFO", "hello bob"), ("WARNING", "from a library")]


def test_log_lines_are_not_recorded_again_while_stored_steps_replay(app: Tether) -> None:
    @app.task(retry=AGAIN)
    async def flaky(payload: None, ctx: Context) -> None:
        ctx.logger.info("before the steps")
        await ctx.step("one", lambda: None)
        ctx.logger.info("between the steps")
        await ctx.step("two", lambda: None)
        ctx.logger.info("after the steps, attempt %d", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("fail once after both steps")

    handle = flaky.trigger()
    drain(Worker(app))
    logs = [e.data["message"] for e in app.runs.trace(handle.id) if e.kind == "log"]
    assert logs == ["before the steps", "between the steps", "after the steps, attempt 1",
                    "after the steps, attempt 2"]
