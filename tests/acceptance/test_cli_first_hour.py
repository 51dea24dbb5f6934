"""What a new user trips over in the first hour with the `tether` command (issue 17): each mistake
gets one clear line on stderr and a non-zero exit, read-only commands create no database, and the
options work wherever they are written. Most cases run in process (click's CliRunner); those that
need a real process (a taken port, a broken app file, logging) start one each."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli
from click.testing import CliRunner, Result

from backends import POSTGRES, require_postgres
from tether import Tether
from tether.cli.main import cli

README = Path(__file__).parents[2] / "README.md"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def tether(*args: str, database: str | None = None) -> Result:
    """`tether ARGS` in this process; TETHER_DATABASE_URL is `database` (unset when None)."""
    return CliRunner().invoke(cli, list(args), prog_name="tether",
                              env={"TETHER_DATABASE_URL": database})


def one_line_error(result: Result, *fragments: str, exit_code: int | None = None) -> str:
    """The in-process twin of assert_clean_error: one line `Error: ...` on stderr, no traceback."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.exit_code != 0, shown
    if exit_code is not None:
        assert result.exit_code == exit_code, shown
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), f"{result.exception!r}\n{shown}"
    assert "Traceback" not in result.output, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), shown
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing; {shown}"
    return lines[0]


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"{result.exception!r}\n{result.output}"
    return result.stdout


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: a `.tether/tether.db` would appear here."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Tether]:
    """An app on a migrated SQLite file, with one task and three runs of it."""
    db = tmp_path / "tether.db"
    tether_app = Tether(f"sqlite:///{db}")

    @tether_app.task(id="noop")
    def noop(payload: Any) -> None:
        return None

    for n in range(3):
        tether_app.trigger("noop", {"n": n})
    try:
        yield tether_app
    finally:
        tether_app.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)


# -- 2, 3: --limit --------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["runs", "list", "--limit", "0"], ["runs", "list", "--limit", "-1"],
                                  ["tokens", "list", "--limit", "0"]], ids=" ".join)
def test_a_limit_below_one_is_refused(app: Tether, args: list[str]) -> None:
    one_line_error(tether(*args, database=app.database_url), "--limit", exit_code=2)


def test_runs_list_says_on_stderr_when_more_runs_exist(app: Tether) -> None:
    two = tether("runs", "list", "--limit", "2", database=app.database_url)
    assert len(ok(two).splitlines()) == 3  # the header and two runs
    assert two.stderr.strip() == ("2 of more runs shown (newest first); use --limit N or "
                                  "filters (--status, --task, --tag) to see others")
    as_json = tether("runs", "list", "--limit", "2", "--json", database=app.database_url)
    assert len(json.loads(ok(as_json))) == 2 and "2 of more runs shown" in as_json.stderr
    every = tether("runs", "list", "--limit", "3", database=app.database_url)
    assert len(ok(every).splitlines()) == 4 and every.stderr == ""


# -- 6: read-only commands create no database -----------------------------------------------------
READ_ONLY = [["runs", "list"], ["runs", "show", "run_x"], ["runs", "cancel", "run_x"],
             ["tokens", "list"], ["tokens", "complete", "waitpoint_x"], ["schedules", "list"],
             ["keys", "list"], ["keys", "revoke", "ci"], ["tasks", "list"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_no_database(workdir: Path, args: list[str]) -> None:
    missing = workdir / "typo.db"
    one_line_error(tether(*args, database=f"sqlite:///{missing}"),
                   f"no Tether database at {missing} (run a worker, `tether db upgrade` or "
                   "`tether trigger` to create one; or set --database / TETHER_DATABASE_URL)")
    assert not missing.exists()
    one_line_error(tether(*args), f"no Tether database at {workdir / '.tether' / 'tether.db'}")
    assert list(workdir.iterdir()) == []  # not even the default .tether folder


@pytest.mark.parametrize("args", [["db", "upgrade"], ["trigger", "noop"], ["keys", "create"]],
                         ids=" ".join)
def test_a_missing_directory_is_named_not_created(workdir: Path, args: list[str]) -> None:
    missing = workdir / "no" / "such" / "dir"
    one_line_error(tether(*args, database=f"sqlite:///{missing / 'x.db'}"),
                   f"the directory {missing} does not exist")
    assert list(workdir.iterdir()) == []


def test_db_upgrade_creates_the_default_database_beside_the_working_directory(
        workdir: Path) -> None:
    assert ok(tether("db", "upgrade")).startswith("applied: 0001_init")
    db = workdir / ".tether" / "tether.db"
    try:
        assert db.is_file()
        assert ok(tether("runs", "list")).split()[:3] == ["ID", "TASK", "STATUS"]
    finally:
        shutil.rmtree(bus_folder(db), ignore_errors=True)


# -- 5: PostgreSQL that cannot be reached ---------------------------------------------------------
def test_postgres_refusing_connections_is_one_line_at_once(workdir: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    one_line_error(tether("runs", "list", database=f"postgresql://postgres@127.0.0.1:{port}/test"),
                   f"cannot connect to PostgreSQL at 127.0.0.1:{port}/test: connection refused")
    assert time.monotonic() - started < 3


def test_postgres_missing_database_is_named(workdir: Path) -> None:
    require_postgres()
    url = POSTGRES.rsplit("/", 1)[0] + "/tether_no_such_db"
    started = time.monotonic()
    one_line_error(tether("db", "upgrade", database=url),
                   'database "tether_no_such_db" does not exist')
    assert time.monotonic() - started < 3


# -- 8: statuses and token data -------------------------------------------------------------------
def test_an_unknown_status_lists_the_valid_ones(app: Tether) -> None:
    line = one_line_error(tether("runs", "list", "--status", "BOGUS", database=app.database_url),
                          "BOGUS", exit_code=2)
    assert all(status in line for status in ("QUEUED", "EXECUTING", "FAILED", "COMPLETED"))
    line = one_line_error(tether("tokens", "list", "--status", "done", database=app.database_url),
                          "done", exit_code=2)
    assert all(status in line for status in ("WAITING", "COMPLETED", "TIMED_OUT"))
    queued = tether("runs", "list", "--status", "queued", database=app.database_url)
    assert len(ok(queued).splitlines()) == 4


def test_token_data_that_is_not_json_is_called_token_data(app: Tether) -> None:
    token = app.tokens.create(timeout="1h")
    one_line_error(tether("tokens", "complete", token.id, "notjson", database=app.database_url),
                   "token data is not valid JSON")


# -- 9: --json timestamps as the API writes them --------------------------------------------------
def _timestamps(document: Any) -> list[str]:
    """Every value of a key ending in _at (or `at`) in a JSON document."""
    if isinstance(document, list):
        return [t for item in document for t in _timestamps(item)]
    if isinstance(document, dict):
        found = [v for k, v in document.items()
                 if (k == "at" or k.endswith("_at")) and isinstance(v, str)]
        return found + [t for v in document.values() for t in _timestamps(v)]
    return []


def test_json_timestamps_are_iso_8601_in_utc(app: Tether) -> None:
    app.tokens.create(timeout="1h")
    app.keys.create("ci")
    app.schedules.create(task="noop", cron="0 9 * * *")
    run_id = app.runs.list(limit=1)[0].id
    for args in (["runs", "list"], ["runs", "show", run_id], ["tokens", "list"], ["keys", "list"],
                 ["schedules", "list"]):
        document = json.loads(ok(tether(*args, "--json", database=app.database_url)))
        stamps = _timestamps(document)
        assert stamps, (args, document)
        assert all(ISO.match(s) for s in stamps), (args, stamps)


# -- 10: global options after the command ---------------------------------------------------------
def test_global_options_work_after_the_command(app: Tether, workdir: Path) -> None:
    listed = tether("runs", "list", "--database", app.database_url, "--log-level", "warning",
                    "--traceback")
    assert len(ok(listed).splitlines()) == 4
    assert not (workdir / ".tether").exists()
    by_group = tether("--database", "sqlite:///elsewhere.db", "runs", "list", "--database",
                      app.database_url)
    assert len(ok(by_group).splitlines()) == 4  # the one nearest the command wins


def test_traceback_shows_where_an_error_came_from(app: Tether) -> None:
    result = tether("runs", "show", "run_nope", "--traceback", database=app.database_url)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: no run with id 'run_nope'"


# -- 11, 12: help and the README ------------------------------------------------------------------
def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and "--help" not in p.opts]


def test_every_command_and_option_has_help() -> None:
    for path, command in commands(cli):
        assert command.help, f"tether {' '.join(path)} has no help"
        for option in options(command):
            assert option.help, f"{'/'.join(option.opts)} of tether {' '.join(path)} has no help"


def readme_entries() -> dict[tuple[str, ...], str]:
    """The README's command-line summary: each `tether ...` line with its indented continuation
    lines, by the command path its leading lower-case words name (`runs cancel|replay` names two)."""
    section = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    entries: dict[tuple[str, ...], str] = {}
    paths: list[tuple[str, ...]] = []
    for line in block.splitlines():
        if line.startswith("tether"):
            words = list(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z|-]*", w) is not None,
                                             line.split()[1:]))
            head, last = words[:-1], (words[-1].split("|") if words else [])
            paths = [(*head, name) for name in last] or [()]
            for path in paths:  # a command may have several lines
                entries[path] = entries.get(path, "") + "\n" + line
        elif line.startswith(" "):
            for path in paths:
                entries[path] += "\n" + line
    return entries


def test_the_readme_names_every_command_and_option() -> None:
    entries = readme_entries()
    global_names = {name for option in options(cli) for name in option.opts}
    for path, command in commands(cli):
        if isinstance(command, click.Group) and path:
            continue  # a group only holds commands
        assert path in entries, f"README's command line has no line for tether {' '.join(path)}"
        for option in options(command):
            if path and set(option.opts) <= global_names:
                continue  # the global options are documented once, on the `tether` line
            names = option.opts + option.secondary_opts  # --reload/--no-reload
            assert any(re.search(re.escape(name) + r"\b", entries[path]) for name in names), \
                f"README: {'/'.join(option.opts)} missing for tether {' '.join(path)}"


# -- real processes -------------------------------------------------------------------------------
BROKEN_APPS = {
    "syntax": ("from tether import Tether\n\napp = Tether()\n\n\ndef f(:\n    pass\n",
               "Error: app.py line 6: SyntaxError: invalid syntax"),
    "raises": ("from tether import Tether\n\napp = Tether()\nsettings = {}\n\n\n"
               "timestamp = settings['x']\n",
               "Error: importing app.py raised KeyError: 'x' (app.py line 7)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BROKEN_APPS))
def test_an_app_that_cannot_be_imported_is_one_line(case: str, tmp_path: Path) -> None:
    source, expected = BROKEN_APPS[case]
    (tmp_path / "app.py").write_text(source)
    env = make_env(tmp_path / "tether.db")
    line = assert_clean_error(run_cli("worker", "app.py", env=env, cwd=tmp_path, timeout=30))
    assert line.startswith(expected), line
    shown = run_cli("worker", "app.py", "--log-level", "debug", env=env, cwd=tmp_path, timeout=30)
    assert shown.returncode == 1 and "Traceback (most recent call last)" in shown.stderr, shown
    assert shown.stderr.strip().splitlines()[-1].startswith(expected), shown


@pytest.mark.slow
@pytest.mark.parametrize("args", [["serve"], ["dev", "app.py", "--no-reload"], ["dev", "app.py"]],
                         ids=" ".join)
def test_a_port_in_use_fails_at_once(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from tether import Tether\n\napp = Tether()\n\n\n"
                                     "@app.task(id='noop')\ndef noop(payload):\n    return None\n")
    env = make_env(tmp_path / "tether.db")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_cli(*args, "--port", str(port), env=env, cwd=tmp_path, timeout=20)
    assert_clean_error(result, f"Error: cannot listen on 127.0.0.1:{port}: address already in "
                       "use (another process holds it; choose another with --port)")
    assert result.returncode == 1
    shutil.rmtree(bus_folder(tmp_path / "tether.db"), ignore_errors=True)
