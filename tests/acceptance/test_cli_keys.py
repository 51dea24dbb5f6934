"""`tether keys create|list|revoke`, run as a subprocess against a real SQLite database."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli

from tether import Tether


@dataclass
class Keys:
    directory: Path
    env: dict[str, str]
    client: Tether  # the same database, in the test process

    def tether(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("keys", *args, env=self.env, cwd=self.directory)

    def ok(self, *args: str) -> str:
        result = self.tether(*args)
        assert result.returncode == 0, result
        assert "Traceback" not in result.stdout + result.stderr, result
        return result.stdout


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keys]:
    db = tmp_path / "keys.db"
    client = Tether(f"sqlite:///{db}")
    client.storage.migrate()  # `keys list` reads only a database that exists
    try:
        yield Keys(tmp_path, make_env(db), client)
    finally:
        client.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)


def _secret(output: str) -> str:
    [secret] = [word for word in output.split() if word.startswith("tk_")]
    return secret


def test_create_prints_the_secret_once_and_list_never_shows_it(keys: Keys) -> None:
    assert "No API keys yet" in keys.ok("list")
    out = keys.ok("create", "--name", "ci")
    secret = _secret(out)
    assert "will not be shown again" in out
    key = keys.client.keys.verify(secret)
    assert key is not None and key.name == "ci" and key.id in out
    listed = keys.ok("list")
    assert secret not in listed
    header, row = listed.strip().splitlines()
    assert header.split()[:4] == ["ID", "NAME", "PREFIX", "CREATED"] and "STATUS" in header
    assert row.split()[:3] == [key.id, "ci", key.prefix] and row.endswith("active")
    assert secret.startswith(key.prefix)


def test_create_json_gives_id_name_and_secret(keys: Keys) -> None:
    created = json.loads(keys.ok("create", "--json"))
    assert set(created) == {"id", "name", "secret"} and created["name"] == "default"
    key = keys.client.keys.verify(created["secret"])
    assert key is not None and key.id == created["id"]
    [listed] = json.loads(keys.ok("list", "--json"))
    assert listed["id"] == created["id"] and listed["revoked_at"] is None
    assert "secret" not in listed


def test_revoke_by_name_or_id_refuses_the_key(keys: Keys) -> None:
    laptop = json.loads(keys.ok("create", "--name", "laptop", "--json"))
    ci = json.loads(keys.ok("create", "--name", "ci", "--json"))
    out = keys.ok("revoke", "laptop")
    assert laptop["id"] in out and "revoked" in out
    assert keys.client.keys.verify(laptop["secret"]) is None
    assert keys.client.keys.verify(ci["secret"]) is not None
    assert "revoked" in keys.ok("revoke", laptop["id"])  # twice is harmless
    keys.ok("revoke", ci["id"])
    assert keys.client.keys.verify(ci["secret"]) is None
    rows = keys.ok("list").strip().splitlines()[1:]
    assert len(rows) == 2 and all("revoked" in row for row in rows)


def test_revoke_errors_are_one_clear_line(keys: Keys) -> None:
    assert_clean_error(keys.tether("revoke", "nobody"), "no API key with id or name 'nobody'")
    first = json.loads(keys.ok("create", "--name", "ci", "--json"))
    second = json.loads(keys.ok("create", "--name", "ci", "--json"))
    assert_clean_error(keys.tether("revoke", "ci"), first["id"], second["id"], "by its id")
    assert keys.client.keys.verify(first["secret"]) is not None  # nothing was revoked
    assert_clean_error(keys.tether("create", "--name", " "), "name")


@pytest.mark.parametrize("command", ["create", "list", "revoke"])
def test_each_command_has_help_with_an_example(keys: Keys, command: str) -> None:
    assert "Example" in keys.ok(command, "--help")
