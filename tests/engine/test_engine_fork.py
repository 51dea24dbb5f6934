"""`app.runs.fork` and `tether runs fork`: a new run that keeps the stored results of the durable
calls before a step and executes from it on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from engine_helpers import drain, record

from tether import (
    Context,
    ManualClock,
    Retry,
    RunNotFound,
    RunStatus,
    StepNotFound,
    Tether,
    Worker,
)
from tether.cli.main import cli

ONCE = Retry(max_attempts=1)


def five_steps(app: Tether, side: Path, broken: dict[str, bool]) -> Any:
    def effect(name: str) -> int:
        if name == "s3" and broken["s3"]:
            raise RuntimeError("s3 is broken")
        with side.open("a") as out:
            out.write(name + "\n")
        return len(side.read_text().splitlines())  # differs between a first call and a second

    @app.task(id="five", retry=ONCE)
    async def five(payload: dict[str, int], ctx: Context) -> list[int]:
        results = []
        for n in range(1, 6):
            results.append(await ctx.step(f"s{n}", effect, f"s{n}"))
        return results

    return five


@pytest.fixture
def failed(app: Tether, tmp_path: Path) -> tuple[str, Path, dict[str, bool]]:
    side, broken = tmp_path / "side-effects.txt", {"s3": True}
    handle = five_steps(app, side, broken).trigger({"n": 5}, tags=["orders"])
    drain(Worker(app))
    assert record(app, handle.id).status == RunStatus.FAILED
    assert side.read_text().split() == ["s1", "s2"]
    return handle.id, side, broken


def test_a_fork_keeps_the_steps_before_its_step_and_runs_the_rest(
        app: Tether, failed: tuple[str, Path, dict[str, bool]]) -> None:
    source, side, broken = failed
    broken["s3"] = False  # the fix is deployed
    forked = app.runs.fork(source, from_step="s3")
    run = app.runs.retrieve(forked.id)
    assert run.status == RunStatus.QUEUED and run.id != source
    assert run.payload == {"n": 5} and run.tags == ["orders"] and run.task_id == "five"
    assert run.metadata == {"tether.forked_from": {"run_id": source, "from_step": "s3"}}
    drain(Worker(app))
    run = app.runs.retrieve(forked.id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert side.read_text().split() == ["s1", "s2", "s3", "s4", "s5"]  # s1, s2 not called again
    assert run.output == [1, 2, 3, 4, 5]  # s1 and s2: the results the source stored
    assert app.runs.retrieve(source).status == RunStatus.FAILED  # the source is left alone
    trace = app.runs.trace(forked.id)
    assert [e.name for e in trace[:2]] == ["TRIGGERED", "FORKED"]
    assert trace[1].data["forked_from"] == source
    assert f"forked from {source} at 's3'" in trace[1].data["reason"]
    # a replay of the fork is a plain new run: its origin is not repeated
    again = app.runs.replay(forked.id)
    assert app.runs.retrieve(again.id).metadata == {}


def test_a_fork_is_refused_clearly(app: Tether,
                                   failed: tuple[str, Path, dict[str, bool]]) -> None:
    source, _, _ = failed
    with pytest.raises(RunNotFound):
        app.runs.fork("run_missing", from_step="s1")
    with pytest.raises(StepNotFound, match=r"stored no durable call named 'nope'; its calls: "
                                           r"s1, s2, s3$"):
        app.runs.fork(source, from_step="nope")
    fresh = app.trigger("five", {"n": 1})
    with pytest.raises(StepNotFound, match="it has stored none"):
        app.runs.fork(fresh.id, from_step="s1")


def test_a_run_still_waiting_can_be_forked(app: Tether, clock: ManualClock,
                                           tmp_path: Path) -> None:
    calls: list[str] = []

    @app.task(id="nap", retry=ONCE)
    async def nap(payload: None, ctx: Context) -> str:
        await ctx.step("load", calls.append, "load")
        await ctx.step("load", calls.append, "load again")
        await ctx.sleep(3600)
        await ctx.step("after", calls.append, "after")
        return "done"

    source = nap.trigger()
    drain(Worker(app))
    assert record(app, source.id).status == RunStatus.WAITING
    forked = app.runs.fork(source.id, from_step="load#2")  # a key: the second call named load
    drain(Worker(app))
    assert calls == ["load", "load again", "load again"]
    assert record(app, forked.id).status == RunStatus.WAITING  # it sleeps on its own
    clock.advance(3600)
    drain(Worker(app))
    assert {app.runs.retrieve(r).status for r in (source.id, forked.id)} == {RunStatus.COMPLETED}


def test_tether_runs_fork_prints_the_new_run(
        app: Tether, failed: tuple[str, Path, dict[str, bool]]) -> None:
    source, _, broken = failed
    broken["s3"] = False
    task = app.tasks["five"]  # what a worker registers: the CLI triggers without the code
    app.storage.register_tasks([task.record(app.clock.now())], [task.queue_record()])
    runner = CliRunner()
    env = {"TETHER_DATABASE_URL": app.database_url}
    result = runner.invoke(cli, ["runs", "fork", source, "--from-step", "s3"],
                           prog_name="tether", env=env)
    assert result.exit_code == 0, result.output
    new_id = result.stdout.strip()
    assert new_id.startswith("run_") and new_id != source
    assert app.runs.retrieve(new_id).metadata["tether.forked_from"]["run_id"] == source
    refused = runner.invoke(cli, ["runs", "fork", source, "--from-step", "nope"],
                            prog_name="tether", env=env)
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert refused.stderr.strip().splitlines() == [
        f"Error: run {source} stored no durable call named 'nope'; its calls: s1, s2, s3"]
