"""The workers page with real worker processes: three `tether worker` processes on the
dashboard's database, one SIGKILLed; the page shows two live and one gone (the open page
updates by itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import Dash, wait_until

from tether.storage.records import WorkerRecord

TETHER_EXE = Path(sys.executable).with_name("tether")

APP = '''
import asyncio
from tether import Tether

app = Tether()


@app.task(id="nap")
async def nap(payload: dict) -> None:
    await asyncio.sleep(payload.get("seconds", 0.1))
'''

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(dash: Dash, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    app = tmp_path / "workers_app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_DATABASE_URL"] = dash.tether.storage.url
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(3):
            log = (tmp_path / f"worker-{index}.log").open("wb")
            started.append(subprocess.Popen(
                [str(TETHER_EXE), "worker", str(app), "--concurrency", str(index + 2)],
                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT))
            log.close()
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def registered(dash: Dash, pids: set[int]) -> list[WorkerRecord] | None:
    found = [w for w in dash.tether.storage.workers_seen(None, 100) if w.pid in pids]
    return found if len(found) == len(pids) else None


def test_the_workers_page_shows_live_workers_and_a_killed_one_as_gone(
        logged_in: Any, dash: Dash, processes: list[subprocess.Popen[bytes]]) -> None:
    page = logged_in
    pids = {p.pid for p in processes}
    wait_until(lambda: registered(dash, pids), 20, "the three workers never registered")
    page.goto(dash.url + "/workers")
    assert page.locator("nav a.active").inner_text() == "Workers"
    for proc in processes:
        page.locator(f"tr[data-pid='{proc.pid}'][data-state='live']").wait_for()

    victim = processes[1]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)  # reaped: its pid no longer exists
    # the open page updates by itself (server-sent events): no reload
    page.locator(f"tr[data-pid='{victim.pid}'][data-state='gone']").wait_for()
    row = page.locator(f"tr[data-pid='{victim.pid}']")
    assert "gone" in row.locator(".badge").inner_text()
    for proc in (processes[0], processes[2]):
        live = page.locator(f"tr[data-pid='{proc.pid}']")
        assert live.get_attribute("data-state") == "live"
        assert "live" in live.locator(".badge").inner_text()
    assert page.locator("tr[data-state='gone']").count() == 1
    assert "0/4" in page.locator(f"tr[data-pid='{processes[2].pid}']").inner_text()

    page.reload()  # and so does a fresh load
    assert page.locator(f"tr[data-pid='{victim.pid}']").get_attribute("data-state") == "gone"
    states = {p.pid: page.locator(f"tr[data-pid='{p.pid}']").get_attribute("data-state")
              for p in processes}
    assert states == {processes[0].pid: "live", victim.pid: "gone", processes[2].pid: "live"}
    assert processes[0].poll() is None and processes[2].poll() is None
