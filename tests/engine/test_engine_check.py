"""`tether check` / `app.check_replay` (issue 18, safe deploys): histories stored by really running a
v1 app's tasks, then checked with a v2 app's code on the same database. The check flags exactly the
runs whose history passed a renamed step, calls no step function and writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import textwrap
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from tether import Context, Tether, Worker
from tether.cli.main import cli
from tether.loader import load_app

V1 = '''
import asyncio
from pathlib import Path
from tether import Retry, Tether

app = Tether()
EFFECTS = Path({effects!r})


def effect(what):
    with EFFECTS.open("a") as out:
        out.write(what + "\\n")
    return what


@app.task(id="build-report")
async def build(payload, ctx):
    await ctx.step("load", effect, "load")
    if payload["early"]:
        await ctx.sleep(3600, name="nap")  # parks before "render"
    await ctx.step({render!r}, effect, "render")
    await ctx.checkpoint({{"rendered": True}})
    await ctx.sleep(3600, name="later")  # parks after it
    return "done"


def boom():
    effect("boom")
    raise RuntimeError("down")


@app.task(id="flaky", retry=Retry(max_attempts=3, min_delay=3600, max_delay=3600))
async def flaky(payload, ctx):
    await ctx.step("fetch", effect, "fetch")
    await ctx.step("store", boom)  # fails: the run is QUEUED again, its next call a step


@app.task(id="tally")
def tally(payload, ctx):
    for i in range(3):
        ctx.step(f"count-{{i}}", effect, "count")
    ctx.sleep(3600)
    return 3
{extra}
'''

GONE = '''

@app.task(id="gone")
async def gone(payload, ctx):
    await ctx.step("one", effect, "one")
    await ctx.sleep(3600)
'''


def tether(*args: str, database: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="tether",
                              env={"TETHER_DATABASE_URL": database})


def write_app(folder: Path, effects: Path, render: str, extra: str = "") -> str:
    path = folder / f"reports_{uuid.uuid4().hex[:10]}.py"
    path.write_text(textwrap.dedent(V1.format(effects=str(effects), render=render, extra=extra)))
    return str(path)


def dump(db_url: str) -> dict[str, list[str]]:
    """Every row of every table of the database, sorted."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(urlsplit(db_url).path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                                 "'table'")]
            return {t: sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{t}"'))
                    for t in tables}
        finally:
            conn.close()
    import psycopg

    parts = urlsplit(db_url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(db_url.split("?")[0]) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = %s", (schema,))]
        return {t: sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{schema}"."{t}"'))
                for t in tables}


@pytest.fixture
def stored(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Three early runs (parked before "render"), two late ones (parked after it), one sync run
    and one run of a task v2 drops: stored by a v1 worker."""
    monkeypatch.setenv("TETHER_DATABASE_URL", db_url)
    effects = tmp_path / "effects.txt"
    v1 = load_app(write_app(tmp_path, effects, "render", GONE))
    early = [v1.trigger("build-report", {"early": True}).id for _ in range(3)]
    late = [v1.trigger("build-report", {"early": False}).id for _ in range(2)]
    sync = v1.trigger("tally", {}).id
    flaky = v1.trigger("flaky", {}).id
    gone = v1.trigger("gone", {}).id
    asyncio.run(Worker(v1).run_until_idle())
    assert {r.id: r.status for r in v1.runs.list(limit=100)
            if r.status != "WAITING"} == {flaky: "QUEUED"}
    v1.close()
    return {"early": early, "late": late, "sync": sync, "flaky": flaky, "gone": gone, "effects": effects,
            "v1": v1, "folder": tmp_path}


def test_check_flags_the_runs_that_passed_a_renamed_step(db_url: str,
                                                         stored: dict[str, Any]) -> None:
    effects: Path = stored["effects"]
    v2 = write_app(stored["folder"], effects, "render-pdf")
    effects_before, rows_before = effects.read_text(), dump(db_url)
    result = tether("check", v2, "--json", database=db_url)
    assert result.exit_code == 1, result.output
    runs = {r["run_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(runs) == {*stored["early"], *stored["late"], stored["sync"], stored["flaky"],
                         stored["gone"]}
    for run in runs.values():
        assert set(run) == {"run_id", "task", "status", "verdict", "detail"}
        assert run["status"] == ("QUEUED" if run["run_id"] == stored["flaky"] else "WAITING")
    assert {i for i, r in runs.items() if r["verdict"] == "would_fail"} == set(stored["late"])
    assert {i for i, r in runs.items() if r["verdict"] == "ok"} == {
        *stored["early"], stored["sync"], stored["flaky"]}
    assert runs[stored["gone"]] == {"run_id": stored["gone"], "task": "gone", "status": "WAITING",
                                    "verdict": "cannot_check",
                                    "detail": "task 'gone' is not in the code"}
    assert runs[stored["late"][0]]["detail"] == (
        'position 2: stored step "render", code now calls step "render-pdf"')
    assert re.fullmatch(r"8 runs checked in \d+\.\d s: 5 ok, 2 would fail, 1 cannot check",
                        result.stderr.strip())
    # no step function was called (the failed "store" of "flaky" was next), nothing was written
    assert effects_before.count("boom") == 1
    assert effects.read_text() == effects_before
    assert dump(db_url) == rows_before


def test_check_text_output_and_exit_codes(db_url: str, stored: dict[str, Any]) -> None:
    effects: Path = stored["effects"]
    v2 = write_app(stored["folder"], effects, "render-pdf")
    result = tether("check", v2, "--task", "build-report", database=db_url)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("5 runs checked in ") and lines[0].endswith(": 3 ok, 2 would fail")
    assert sorted(lines[1:]) == sorted(
        f'{run}  build-report  WAITING  would fail: position 2: stored step "render", code now '
        'calls step "render-pdf"' for run in stored["late"])
    # the unchanged sync task passes; so does the old code on its own history
    assert tether("check", v2, "--task", "tally", database=db_url).exit_code == 0
    v1_again = write_app(stored["folder"], effects, "render", GONE)
    same = tether("check", v1_again, database=db_url)
    assert same.exit_code == 0, same.output
    assert same.stdout.splitlines()[0].endswith(": 8 ok")
    # only the statuses asked for
    none = tether("check", v2, "--status", "executing", database=db_url)
    assert none.exit_code == 0 and none.stdout.startswith("0 runs checked")


def test_check_replay_api_and_exceptions_of_the_new_code(db_url: str,
                                                         stored: dict[str, Any]) -> None:
    effects: Path = stored["effects"]
    broken = write_app(stored["folder"], effects, "render", GONE.replace(
        'await ctx.step("one", effect, "one")', 'await ctx.step("one", effect, "one")\n'
        '    raise KeyError("timestamp")'))
    app = load_app(broken)
    report = app.check_replay(task="gone")
    app.close()
    [run] = report.runs
    assert (run.run_id, run.verdict) == (stored["gone"], "would_fail")
    assert run.detail == "position 1: the code raised KeyError: 'timestamp'"
    assert not report.passed and report.count("would_fail") == 1
    bare = Tether(db_url)  # no tasks in its code
    assert bare.check_replay(include_failed=True).count("cannot_check") == 8
    bare.close()


WAITS = '''
from tether import Tether

app = Tether()


@app.task(id="child")
async def child(payload, ctx):
    await ctx.sleep(3600)


@app.task(id="other-child")
async def other(payload, ctx):
    return None


@app.task(id="parent")
async def parent(payload, ctx):
    token = await ctx.create_token(timeout="1h")
    if payload["token"]:
        await ctx.wait_for_token(token)
    return await ctx.trigger_and_wait({child!r}, {{}})
'''


def test_check_tokens_and_child_runs(db_url: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits replay from their rows: a token waited for and children still running are "ok";
    a wait that now names another task is "would fail"."""
    monkeypatch.setenv("TETHER_DATABASE_URL", db_url)

    def write(name: str, child: str) -> str:
        path = tmp_path / f"{name}_{uuid.uuid4().hex[:10]}.py"
        path.write_text(WAITS.format(child=child))
        return str(path)

    v1 = load_app(write("waits_v1", "child"))
    on_token = v1.trigger("parent", {"token": True}).id
    on_child = v1.trigger("parent", {"token": False}).id
    asyncio.run(Worker(v1).run_until_idle())
    statuses = {r.task_id: r.status for r in v1.runs.list(limit=10)}
    assert statuses == {"parent": "WAITING", "child": "WAITING"}
    v1.close()
    rows = dump(db_url)
    result = tether("check", write("waits_v2", "other-child"), "--json", database=db_url)
    runs = {r["run_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert runs[on_token]["verdict"] == "ok"
    assert runs[on_child]["verdict"] == "would_fail"
    assert runs[on_child]["detail"] == ('position 2: stored trigger_and_wait "child", code now '
                                        'calls trigger_and_wait "other-child"')
    assert [r["verdict"] for r in runs.values() if r["task"] == "child"] == ["ok"]
    assert result.exit_code == 1 and dump(db_url) == rows
    assert tether("check", write("waits_v1b", "child"), database=db_url).exit_code == 0


class Report(BaseModel):
    day: str
    team: str


def test_a_payload_that_no_longer_validates_cannot_be_checked(db_url: str) -> None:
    v1 = Tether(db_url, inline_sleep=0)

    @v1.task(id="typed")
    async def typed_v1(payload: Any, ctx: Context) -> None:
        await ctx.step("a", lambda: 1)
        await ctx.sleep(3600)

    run = v1.trigger("typed", {"day": "2026-12-06"}).id
    asyncio.run(Worker(v1).run_until_idle())
    v1.close()

    v2 = Tether(db_url)

    @v2.task(id="typed")
    async def typed_v2(payload: Report, ctx: Context) -> None:
        await ctx.step("a", lambda: 1)
        await ctx.sleep(3600)

    [check] = v2.check_replay().runs
    v2.close()
    assert (check.run_id, check.status, check.verdict) == (run, "WAITING", "cannot_check")
    assert check.detail is not None
    assert check.detail == ("payload no longer validates: payload for task 'typed' is invalid at "
                            "team: Field required")


def test_code_that_swallows_the_end_of_the_replay_goes_no_further(db_url: str) -> None:
    from tether import Retry

    calls: list[str] = []

    def fails() -> None:
        calls.append("b")
        raise RuntimeError("down")

    v1 = Tether(db_url)

    @v1.task(id="swallow", retry=Retry(min_delay=3600, max_delay=3600))
    async def swallow_v1(payload: Any, ctx: Context) -> None:
        await ctx.step("a", lambda: 1)
        await ctx.step("b", fails)

    run = v1.trigger("swallow").id
    asyncio.run(Worker(v1).run_until_idle())
    v1.close()
    assert calls == ["b"]
    v2 = Tether(db_url)

    @v2.task(id="swallow")
    async def swallow_v2(payload: Any, ctx: Context) -> None:
        await ctx.step("a", lambda: 1)
        # what careless task code does: the check's stop is swallowed too
        with contextlib.suppress(BaseException):
            await ctx.step("b", fails)
        raise ValueError("not reached in a real attempt: step b's function runs first")

    [check] = v2.check_replay().runs
    v2.close()
    assert (check.run_id, check.status, check.verdict) == (run, "QUEUED", "ok")
    assert calls == ["b"]


def test_a_database_behind_the_code_is_refused_and_not_migrated(db_url: str,
                                                                 stored: dict[str, Any]) -> None:
    """The new code may bring migrations: the check applies none (it writes nothing)."""
    delete = "DELETE FROM tether_migrations WHERE name LIKE '0008%'"
    if db_url.startswith("sqlite"):
        with sqlite3.connect(urlsplit(db_url).path) as conn:
            conn.execute(delete)
        conn.close()
    else:
        import psycopg

        schema = parse_qs(urlsplit(db_url).query)["schema"][0]
        with psycopg.connect(db_url.split("?")[0]) as pg:
            pg.execute(delete.replace("tether_migrations", f'"{schema}".tether_migrations'))
    rows = dump(db_url)
    result = tether("check", write_app(stored["folder"], stored["effects"], "render"),
                    database=db_url)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the database lacks this code's migrations (0008_")
    assert "run `tether db upgrade` first" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert dump(db_url) == rows
