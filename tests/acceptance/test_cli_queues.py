"""`tether queues list|paused|pause-key|resume-key|keys` as a user runs them (the installed
command, a real database: both backends): tables, --json, and errors as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import assert_clean_error, run_cli

from tether import Queue, Tether

pytestmark = pytest.mark.slow


@pytest.fixture
def declared(client: Tether) -> Tether:
    @client.task(queue=Queue("openai", concurrency=2, max_queued=100))
    def ask(payload: Any) -> None: ...

    for key in ("tenant-1", "tenant-2", "tenant-2"):
        ask.trigger({}, concurrency_key=key)
    return client


def tether(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = run_cli(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pause_list_and_resume_a_key(declared: Tether, tether_env: dict[str, str],
                                     tmp_path: Path) -> None:
    env, cwd = tether_env, tmp_path
    assert tether("queues", "paused", env=env, cwd=cwd) == "No paused keys.\n"
    said = tether("queues", "pause-key", "openai", "tenant-2", "--for", "10m", "--reason",
                  "quota", env=env, cwd=cwd)
    assert said.startswith("paused key tenant-2 of queue 'openai' until 20")
    tether("queues", "pause-key", "openai", "", "--until", "2099-01-01T00:00:00+00:00",
           env=env, cwd=cwd)

    table = tether("queues", "paused", "openai", env=env, cwd=cwd).splitlines()
    assert table[0].split() == ["QUEUE", "KEY", "UNTIL", "LEFT", "REASON"]
    assert table[1].split()[:3] == ["openai", "''", "2099-01-01T00:00:00.000Z"]
    assert table[2].split()[:2] == ["openai", "tenant-2"] and table[2].endswith("quota")
    listed = json.loads(tether("queues", "paused", "--json", env=env, cwd=cwd))
    assert [(p["queue"], p["key"], p["reason"]) for p in listed] == [
        ("openai", "", "paused by hand"), ("openai", "tenant-2", "quota")]
    assert listed[0]["until"] == "2099-01-01T00:00:00.000Z"
    assert [p.key for p in declared.queues.paused_keys("openai")] == ["", "tenant-2"]

    assert tether("queues", "resume-key", "openai", "tenant-2", env=env, cwd=cwd) == \
        "resumed key tenant-2 of queue 'openai'\n"
    assert tether("queues", "resume-key", "openai", "tenant-2", env=env, cwd=cwd) == \
        "key tenant-2 of queue 'openai' was not paused\n"
    assert [p.key for p in declared.queues.paused_keys()] == [""]
    assert tether("queues", "paused", "other", env=env, cwd=cwd) == \
        "No paused keys in queue 'other'.\n"


def test_list_and_keys(declared: Tether, tether_env: dict[str, str], tmp_path: Path) -> None:
    env, cwd = tether_env, tmp_path
    rows = tether("queues", "list", env=env, cwd=cwd).splitlines()
    assert rows[1].split() == ["openai", "2", "-", "-", "100", "queue", "no"]
    assert json.loads(tether("queues", "list", "--json", env=env, cwd=cwd)) == [
        {"name": "openai", "concurrency": 2, "paused": False, "rate_limit": None,
         "rate_period": None, "rate_burst": None, "rate_scope": None, "total_concurrency": None,
         "max_queued": 100, "on_key_limit": "queue"}]
    keys = tether("queues", "keys", "openai", env=env, cwd=cwd).splitlines()
    assert [line.split() for line in keys] == [["KEY", "QUEUED", "EXECUTING"],
                                               ["tenant-2", "2", "0"], ["tenant-1", "1", "0"]]
    assert json.loads(tether("queues", "keys", "openai", "--limit", "1", "--json", env=env,
                             cwd=cwd)) == [{"key": "tenant-2", "queued": 2, "executing": 0}]


def test_errors_are_one_line(declared: Tether, tether_env: dict[str, str], tmp_path: Path) -> None:
    env, cwd = tether_env, tmp_path
    assert_clean_error(run_cli("queues", "pause-key", "nope", "k", "--for", "1m", env=env,
                               cwd=cwd), "no queue named 'nope'")
    assert_clean_error(run_cli("queues", "pause-key", "openai", "k", env=env, cwd=cwd),
                       "give either --for DURATION or --until TIME")
    assert_clean_error(run_cli("queues", "pause-key", "openai", "k", "--for", "soon", env=env,
                               cwd=cwd))
    assert_clean_error(run_cli("queues", "pause-key", "openai", "k", "--until",
                               "2099-01-01T00:00:00", env=env, cwd=cwd))
    help_text = tether("queues", "pause-key", "--help", env=env, cwd=cwd)
    assert "Example: tether queues pause-key openai tenant-42 --for 10m" in help_text
