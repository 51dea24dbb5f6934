"""`tether rate-limits set|list|delete`, run as a subprocess against a real SQLite database."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli

from tether import Tether


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    db = tmp_path / "limits.db"
    yield tmp_path, make_env(db)
    shutil.rmtree(bus_folder(db), ignore_errors=True)


def _run(cli: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("rate-limits", *args, env=cli[1], cwd=cli[0])


def _ok(cli: tuple[Path, dict[str, str]], *args: str) -> str:
    result = _run(cli, *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result
    return result.stdout


def test_set_list_delete(cli: tuple[Path, dict[str, str]]) -> None:
    assert _ok(cli, "set", "openai", "500", "1m").strip() == "openai: 500 per 1m, burst 1"
    _ok(cli, "set", "tokens", "90000", "60", "--burst", "8000")
    listed = json.loads(_ok(cli, "list", "--json"))
    assert [(d["name"], d["limit"], d["period"], d["burst"]) for d in listed] == [
        ("openai", 500, 60, 1), ("tokens", 90000, 60, 8000)]
    table = _ok(cli, "list").splitlines()
    assert table[0].split() == ["NAME", "LIMIT", "PER", "BURST", "PER", "SECOND"]
    assert table[1].split()[:4] == ["openai", "500", "1m", "1"]
    app = Tether(cli[1]["TETHER_DATABASE_URL"])
    try:
        assert app.rate_limits.get("tokens").burst == 8000  # what the CLI set, the app reads
    finally:
        app.close()
    assert _ok(cli, "delete", "openai").strip() == "deleted openai"
    assert [d["name"] for d in json.loads(_ok(cli, "list", "--json"))] == ["tokens"]


def test_errors_are_one_clear_line(cli: tuple[Path, dict[str, str]]) -> None:
    _ok(cli, "set", "openai", "500", "1m")
    assert_clean_error(_run(cli, "set", "x", "0", "1m"), "limit", "more than 0")
    assert_clean_error(_run(cli, "set", "x", "5", "soon"), "period must be")
    assert_clean_error(_run(cli, "set", "x", "5", "1s", "--burst", "0.5"), "burst", "at least 1")
    assert_clean_error(_run(cli, "set", "bad name", "5", "1s"), "name must be")
    assert_clean_error(_run(cli, "set", "x", "many", "1s"), "many")
    assert_clean_error(_run(cli, "delete", "nope"), "no rate limit named 'nope'")


@pytest.mark.parametrize("command", ["set", "list", "delete"])
def test_each_command_has_help_with_an_example(cli: tuple[Path, dict[str, str]],
                                               command: str) -> None:
    assert "Example" in _ok(cli, command, "--help")
