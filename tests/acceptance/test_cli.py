"""The `tether` command, run as a subprocess against a real worker and database."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from acceptance_support import (
    Workers,
    assert_clean_error,
    bus_folder,
    copy_app,
    make_env,
    run_cli,
    wait_for_status,
)

from tether import RunStatus, Tether
from tether.cli.main import cli

pytestmark = pytest.mark.slow


@dataclass
class Setup:
    directory: Path
    env: dict[str, str]
    client: Tether
    workers: Workers

    def tether(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env, cwd=self.directory)



@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One worker serving cli_app.py for the whole module: it registered the tasks (and the JSON
    schema of `place-order`'s payload model) that the CLI finds without importing the app."""
    directory = tmp_path_factory.mktemp("cli")
    db = directory / "tether.db"
    pool = Workers(directory, make_env(db))
    client = Tether(f"sqlite:///{db}")
    try:
        pool.start(copy_app("cli_app.py", directory))
        yield Setup(directory, pool.env, client, pool)
    finally:
        client.close()
        pool.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)


def test_trigger_wait_prints_the_output(setup: Setup) -> None:
    result = setup.tether("trigger", "add", '{"a": 2, "b": 3}', "--wait", "--timeout", "30")
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {"sum": 5}
    run_id = result.stderr.strip()
    assert run_id.startswith("run_"), result
    run = setup.client.runs.retrieve(run_id)
    assert (run.status, run.output) == (RunStatus.COMPLETED, {"sum": 5})


def test_trigger_parses_payload_into_the_pydantic_model(setup: Setup) -> None:
    result = setup.tether("trigger", "place-order", '{"sku": "A1", "qty": 2}', "--wait",
                          "--timeout", "30")
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {"sku": "A1", "qty": 2, "model": "Order"}


def test_trigger_wait_on_a_failing_run_prints_its_error(setup: Setup) -> None:
    result = setup.tether("trigger", "refuse", "--wait", "--timeout", "30")
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: run "), result
    assert last.endswith(" ended FAILED: tether.errors.AbortRun: refused on purpose"), result


def test_trigger_wait_names_the_type_of_the_exception(setup: Setup) -> None:
    """A KeyError's message is only the key; without its type `'timestamp'` says nothing."""
    result = setup.tether("trigger", "misread", "{}", "--wait", "--timeout", "30")
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(" ended FAILED: KeyError: 'timestamp'"), result


def test_runs_show_prints_the_timeline_and_runs_list_filters_by_status(setup: Setup) -> None:
    result = setup.tether("trigger", "add", '{"a": 20, "b": 22}', "--tag", "cli-test")
    assert result.returncode == 0, result
    run_id = result.stdout.strip()
    assert run_id.startswith("run_"), result
    wait_for_status(setup.client, run_id, RunStatus.COMPLETED, context=setup.workers.describe)

    shown = setup.tether("runs", "show", run_id)
    assert shown.returncode == 0, shown
    text = shown.stdout
    assert f"Run       {run_id}" in text
    assert "Status    COMPLETED" in text
    assert 'Output    {"sum": 42}' in text
    assert "Timeline" in text
    timeline = text.split("Timeline", 1)[1].splitlines()
    assert any("QUEUED -> EXECUTING" in line for line in timeline), text
    assert any("attempt 1" in line and "COMPLETED" in line for line in timeline), text
    assert any("step sum" in line and "COMPLETED" in line for line in timeline), text
    assert any("EXECUTING -> COMPLETED" in line for line in timeline), text

    as_json = setup.tether("runs", "show", run_id, "--json")
    assert as_json.returncode == 0, as_json
    document = json.loads(as_json.stdout)
    assert document["run"]["id"] == run_id
    assert [e["name"] for e in document["trace"] if e["kind"] == "step"] == ["sum"]

    completed = setup.tether("runs", "list", "--status", "COMPLETED")
    assert completed.returncode == 0, completed
    assert completed.stdout.splitlines()[0].split()[:3] == ["ID", "TASK", "STATUS"]
    row = next((line for line in completed.stdout.splitlines() if line.startswith(run_id)), None)
    assert row is not None, completed.stdout
    assert row.split()[1:3] == ["add", "COMPLETED"]
    assert all(line.split()[2] == "COMPLETED" for line in completed.stdout.splitlines()[1:])

    failed = setup.tether("runs", "list", "--status", "FAILED")
    assert failed.returncode == 0, failed
    assert run_id not in failed.stdout

    tagged = setup.tether("runs", "list", "--tag", "cli-test", "--json")
    assert tagged.returncode == 0, tagged
    assert [r["id"] for r in json.loads(tagged.stdout)] == [run_id]


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param(["trigger", "no-such-task", "{}"],
                 ["unknown task 'no-such-task'", "add", "place-order", "refuse"], id="unknown-task"),
    pytest.param(["trigger", "add", "{not json"], ["not valid JSON"], id="invalid-json"),
    pytest.param(["trigger", "place-order", '{"sku": "A1", "qty": "many"}'],
                 ["place-order", "qty"], id="payload-wrong-type"),
    pytest.param(["trigger", "place-order", '{"sku": "A1"}'], ["place-order", "qty"],
                 id="payload-missing-field"),
    pytest.param(["runs", "show", "run_doesnotexist"], ["run_doesnotexist"], id="show-unknown-run"),
    pytest.param(["runs", "cancel", "run_doesnotexist"], ["run_doesnotexist"],
                 id="cancel-unknown-run"),
    pytest.param(["runs", "list", "--status", "BOGUS"], ["BOGUS"], id="unknown-status"),
    pytest.param(["worker", "no_such_app.py"], ["no_such_app.py"], id="worker-missing-app"),
])
def test_clear_one_line_errors(setup: Setup, args: list[str], fragments: list[str]) -> None:
    assert_clean_error(setup.tether(*args), *fragments)


def test_invalid_payload_stores_nothing(setup: Setup) -> None:
    before = len(setup.client.runs.list(task="place-order", limit=1000))
    assert_clean_error(setup.tether("trigger", "place-order", '{"sku": 5, "qty": 1}'), "sku")
    assert len(setup.client.runs.list(task="place-order", limit=1000)) == before


@pytest.mark.parametrize("where", ["missing-parent", "directory"])
@pytest.mark.parametrize("args", [
    pytest.param(["runs", "list"], id="runs-list"),
    pytest.param(["runs", "show", "run_x"], id="runs-show"),
    pytest.param(["trigger", "add", "{}"], id="trigger"),
    pytest.param(["db", "upgrade"], id="db-upgrade"),
])
def test_unreachable_database_is_a_clear_error(args: list[str], where: str, tmp_path: Path) -> None:
    path = Path("/proc/nonexistent/x.db") if where == "missing-parent" else tmp_path
    env = make_env(tmp_path / "unused.db")
    env["TETHER_DATABASE_URL"] = f"sqlite:///{path}"
    try:
        assert_clean_error(run_cli(*args, env=env, cwd=tmp_path), "database", str(path))
    finally:
        shutil.rmtree(bus_folder(path), ignore_errors=True)


def test_db_upgrade_creates_a_fresh_database(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    env = make_env(db)
    try:
        first = run_cli("db", "upgrade", env=env, cwd=tmp_path)
        assert first.returncode == 0, first
        assert first.stdout.strip().startswith("applied: 0001_init, 0002_waits"), first
        assert db.is_file()
        again = run_cli("db", "upgrade", env=env, cwd=tmp_path)
        assert (again.returncode, again.stdout.strip()) == (0, "schema is up to date"), again
        listed = run_cli("runs", "list", env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed
        assert len(listed.stdout.strip().splitlines()) == 1  # the header: no runs yet

        other = tmp_path / "by-flag.db"
        del env["TETHER_DATABASE_URL"]
        by_flag = run_cli("--database", f"sqlite:///{other}", "db", "upgrade", env=env, cwd=tmp_path)
        assert by_flag.returncode == 0, by_flag
        assert by_flag.stdout.strip() == first.stdout.strip(), by_flag
        assert other.is_file()
        assert not (tmp_path / ".tether").exists()
    finally:
        for path in (db, tmp_path / "by-flag.db"):
            shutil.rmtree(bus_folder(path), ignore_errors=True)


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = command_paths(cli)


def test_every_documented_command_exists() -> None:
    documented = {("worker",), ("trigger",), ("runs", "list"), ("runs", "show"),
                  ("runs", "cancel"), ("runs", "replay"), ("db", "upgrade")}
    assert documented <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tether")
def test_help_of_each_command(command: tuple[str, ...], tmp_path: Path) -> None:
    env = make_env(tmp_path / "unused.db")
    result = run_cli(*command, "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0, result
    assert result.stdout.startswith("Usage: "), result
    assert " ".join(("tether", *command)) in result.stdout.splitlines()[0], result
    assert result.stderr == "", result
    assert not (tmp_path / "unused.db").exists()  # help touches no database


def test_tokens_list_and_complete(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    env = make_env(db)
    app = Tether(f"sqlite:///{db}")
    token = app.tokens.create(timeout="1h", tags=["review"])
    try:
        listed = run_cli("tokens", "list", "--status", "WAITING", env=env, cwd=tmp_path)
        assert listed.returncode == 0 and token.id in listed.stdout, listed
        done = run_cli("tokens", "complete", token.id, '{"approved": true}', env=env, cwd=tmp_path)
        assert done.returncode == 0 and "COMPLETED" in done.stdout, done
        assert app.tokens.retrieve(token.id).output == {"approved": True}
        again = run_cli("tokens", "complete", token.id, "1", env=env, cwd=tmp_path)
        assert again.returncode == 0, again  # harmless: the first data stays
        assert app.tokens.retrieve(token.id).output == {"approved": True}
        as_json = run_cli("tokens", "list", "--json", env=env, cwd=tmp_path)
        assert json.loads(as_json.stdout)[0]["status"] == "COMPLETED", as_json
        assert_clean_error(run_cli("tokens", "complete", "waitpoint_nope", env=env, cwd=tmp_path),
                           "no token with id 'waitpoint_nope'")
        assert_clean_error(run_cli("tokens", "complete", token.id, "{bad", env=env, cwd=tmp_path),
                           "not valid JSON")
    finally:
        app.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)
