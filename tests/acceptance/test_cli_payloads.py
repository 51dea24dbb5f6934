"""The `tether` command and users' JSON: a payload or token data that Tether would not store is one
line on stderr and exit 1, with nothing stored; what it stores, `runs show --json` prints back."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli

from tether import Tether, Worker

pytestmark = pytest.mark.slow


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Tether]:
    """`echo` registered in a fresh database, the way a worker registers it."""
    db = tmp_path / "tether.db"
    app = Tether(f"sqlite:///{db}")

    @app.task(id="echo")
    async def echo(payload: Any) -> Any:
        return payload

    now = app.clock.now()
    app.storage.register_tasks([t.record(now) for t in app.tasks.values()],
                               [t.queue_record() for t in app.tasks.values()])
    yield app
    app.close()
    shutil.rmtree(bus_folder(db), ignore_errors=True)


@pytest.mark.parametrize(("payload", "fragment"), [
    pytest.param(json.dumps(nested(101)), "payload is nested 101 levels deep; Tether stores JSON "
                 "nested at most 100 levels", id="too-deep"),
    pytest.param("[" * 5000 + "]" * 5000, "payload is nested deeper than the 100 levels",
                 id="too-deep-to-parse"),
    pytest.param('{"name": "\\ud800"}', "payload holds a lone surrogate '\\ud800'",
                 id="lone-surrogate"),
    pytest.param('"' + "x" * 999 + '"', "payload of 1,001 bytes is over the limit of 1,000 bytes "
                 "(max_payload_size)", id="too-large"),
])
def test_refused_payloads_are_one_line_and_store_nothing(app: Tether, tmp_path: Path,
                                                         payload: str, fragment: str) -> None:
    env = make_env(tmp_path / "tether.db") | {"TETHER_MAX_PAYLOAD_SIZE": "1KB"}
    result = run_cli("trigger", "echo", payload, env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    assert_clean_error(result, fragment)
    assert app.runs.list() == []


def test_an_invalid_size_setting_is_one_line(app: Tether, tmp_path: Path) -> None:
    env = make_env(tmp_path / "tether.db") | {"TETHER_MAX_PAYLOAD_SIZE": "lots"}
    assert_clean_error(run_cli("trigger", "echo", "1", env=env, cwd=tmp_path),
                       "TETHER_MAX_PAYLOAD_SIZE: cannot read 'lots' as a size")


def test_token_data_over_the_limit_is_one_line(app: Tether, tmp_path: Path) -> None:
    token = app.tokens.create()
    env = make_env(tmp_path / "tether.db") | {"TETHER_MAX_PAYLOAD_SIZE": "100"}
    result = run_cli("tokens", "complete", token.id, json.dumps("y" * 200), env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    assert_clean_error(result, "token data of 202 bytes is over the limit of 100 bytes")
    assert app.tokens.retrieve(token.id).status == "WAITING"


def test_runs_show_json_prints_what_was_stored(app: Tether, tmp_path: Path) -> None:
    values = [nested(100), {"text": "\x00 \u2028 \U0001F600 é", "[\"]}\\": None},
              [2**64 + 1, -(10**40), 1e308, -0.0]]
    handles = [app.trigger("echo", value) for value in values]
    asyncio.run(Worker(app).run_until_idle())
    env = make_env(tmp_path / "tether.db")
    for handle, value in zip(handles, values, strict=True):
        shown = run_cli("runs", "show", handle.id, "--json", env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown
        run = json.loads(shown.stdout)["run"]
        assert (run["status"], run["payload"], run["output"]) == ("COMPLETED", value, value)
