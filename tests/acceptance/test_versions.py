"""`tether worker --version` and `tether versions` with a real worker process."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    run_cli,
    wait_for_status,
    wait_until,
)

from tether import BatchItem, RunStatus, Tether
from tether.server import create_app
from tether.server.app import ServerConfig

pytestmark = pytest.mark.slow


def state_of(client: Tether, worker: WorkerProcess) -> str | None:
    return next((w.state for w in client.workers.list() if w.pid == worker.pid), None)


def test_a_worker_runs_the_version_it_is_given(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    app = app_file("limited_app.py")
    worker = start_worker(app, "--version", "build-42")
    assert "(version build-42)" in worker.log()
    [handle] = client.batch_trigger("limited", [BatchItem({"n": 0, "seconds": 0.01})])
    run = wait_for_status(client, handle.id, RunStatus.COMPLETED, context=workers.describe)
    assert run.version == "build-42"
    shown = run_cli("runs", "show", handle.id, env=tether_env, cwd=tmp_path)
    assert "Version   build-42" in shown.stdout, shown
    table = run_cli("versions", env=tether_env, cwd=tmp_path)
    assert table.returncode == 0, table
    assert any(line.split()[:2] == ["build-42", "1"] for line in table.stdout.splitlines()), table

    key = client.keys.create("versions").secret

    async def read() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(client, ServerConfig(dev=True)),
                                        client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return (await http.get(f"/api/v3/runs/{handle.id}",
                                   headers={"Authorization": f"Bearer {key}"}),
                    await http.get(f"/runs/{handle.id}"), await http.get("/versions"))

    answer, page, versions_page = asyncio.run(read())
    assert answer.status_code == 200 and answer.json()["version"] == "build-42", answer.text
    assert page.status_code == 200 and "build-42" in page.text
    assert versions_page.status_code == 200 and 'data-version="build-42"' in versions_page.text
    listed = json.loads(run_cli("versions", "--json", env=tether_env, cwd=tmp_path).stdout)
    assert [(v["version"], len(v["workers"]), v["unfinished"]) for v in listed] == [
        ("build-42", 1, 0)]
    bad = run_cli("worker", str(app), "--version", "no spaces please", env=tether_env,
                  cwd=tmp_path)
    assert bad.returncode != 0 and "version must be" in bad.stderr, bad


def test_a_run_waits_for_a_worker_of_its_version(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path, tether_env: dict[str, str],
) -> None:
    """v1 and v2 workers on one database: a run started on v1 sleeps, the v2 worker never
    claims it, and v1 resumes it. With only v2 left, the run waits for v1 and says so; a
    migrate whose check fails changes nothing, one that passes lets v2 finish it."""
    app = app_file("versions_app.py")
    log = tmp_path / "versions.log"
    old = start_worker(app, "--version", "v1")
    first = client.trigger("two-steps", {"sleep": 1.0})
    second = client.trigger("two-steps", {"sleep": 4.0})
    for handle in (first, second):
        wait_for_status(client, handle.id, RunStatus.WAITING, context=workers.describe)
    new = start_worker(app, "--version", "v2")
    run = wait_for_status(client, first.id, RunStatus.COMPLETED, timeout=30,
                          context=workers.describe)
    assert run.version == "v1"
    assert {line.split()[1] for line in read_lines(log)} == {str(old.pid)}  # v2 ran none of it

    old.send(signal.SIGTERM)
    assert old.wait_exit() == 0
    time.sleep(4.0)  # past the second run's wake-up: v2 sees it due and leaves it
    waiting = client.runs.retrieve(second.id)
    assert waiting.status == RunStatus.QUEUED and waiting.version == "v1", waiting
    listed = {v.version: v for v in client.versions.list()}
    assert listed["v1"].workers == [] and listed["v1"].runs == {"QUEUED": 1}
    assert len(listed["v2"].workers) == 1 and new.proc.poll() is None
    shown = run_cli("runs", "show", second.id, env=tether_env, cwd=tmp_path)
    assert "waits for a worker of version v1: none is running" in shown.stdout, shown
    # the v2 worker heartbeats with free places but claims nothing while a run of its task is
    # ready: the workers list shows it idle-with-work (docs/workers.md: check its version)
    wait_until(lambda: state_of(client, new) == "idle-with-work", 15,
               lambda: f"v2 never shown idle-with-work\n{client.workers.list()}")

    # code whose step was renamed cannot take it over: the migrate changes nothing, says why
    renamed = tmp_path / "renamed_app.py"
    renamed.write_text(app.read_text().replace('ctx.step("before"', 'ctx.step("before-v2"'))
    refused = run_cli("runs", "migrate", str(renamed), second.id, "--to-version", "v2",
                      env=tether_env, cwd=tmp_path)
    assert refused.returncode == 1, refused
    assert f"{second.id}  two-steps  QUEUED  refused:" in refused.stdout, refused
    assert client.runs.retrieve(second.id).version == "v1"
    # the same code as v1 under version v2: it replays, so it moves and v2 finishes it
    moved = run_cli("runs", "migrate", str(app), "--version", "v1", "--to-version", "v2",
                    env=tether_env, cwd=tmp_path)
    assert moved.returncode == 0 and "1 run(s) moved to version v2" in moved.stdout, moved
    done = wait_for_status(client, second.id, RunStatus.COMPLETED, timeout=30,
                           context=workers.describe)
    assert done.version == "v2"
    wait_until(lambda: state_of(client, new) == "live", 10,  # it claimed: no longer idle
               lambda: f"v2 never shown live again\n{client.workers.list()}")
    assert sorted(line.split()[0] for line in read_lines(log)) == ["after", "after", "before",
                                                                    "before"]
