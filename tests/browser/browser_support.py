"""Helpers of the browser tests of the dashboard: Playwright drives Debian's Chromium
(/usr/bin/chromium; install it with scripts/browser) against a real uvicorn server (the
`serve()` helper of tests/server) over a fresh SQLite database, with a real worker executing
runs. Without Chromium or Playwright the tests skip with a message, except under CI=true."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dash_app
import httpx
import pytest

from tether import Run, RunStatus, Tether, Worker
from tether.server import ServerConfig

CHROMIUM = Path("/usr/bin/chromium")
T = TypeVar("T")


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI requires the browser tests", pytrace=False)
    pytest.skip(message)


def _server_helpers() -> Any:
    """tests/server/conftest.py, for its `serve()` (loaded by path: conftests are no package)."""
    path = Path(__file__).resolve().parent.parent / "server" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tether_server_test_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serve = _server_helpers().serve


def wait_until(predicate: Callable[[], T | None], timeout: float, message: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s: {message}")
        time.sleep(0.02)


class ThreadWorker:
    """A `tether.Worker` on its own event loop in a thread, with its own `Tether` app."""

    def __init__(self, url: str) -> None:
        self.app = dash_app.build(url)
        self.worker = Worker(self.app, concurrency=8, shutdown_grace=1.0, poll_interval=0.2)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.worker.run(),),
                                       name="browser-test-worker", daemon=True)

    def start(self) -> ThreadWorker:
        self.thread.start()
        wait_until(lambda: self.app.storage.get_task("quick"), 10, "the worker never registered")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(15)
        if not self.thread.is_alive():
            self.loop.close()
        self.app.close()


@dataclass
class Dash:
    url: str
    key: str  # an API key's secret
    tether: Tether  # the server's app (no tasks of its own: it triggers by id, like `tether serve`)
    worker: ThreadWorker
    server: Iterator[str]

    def run(self, run_id: str) -> Run:
        return self.tether.runs.retrieve(run_id)

    def wait_status(self, run_id: str, *statuses: RunStatus, timeout: float = 15) -> Run:
        return wait_until(lambda: (r := self.run(run_id)).status in statuses and r, timeout,
                          f"run {run_id} never reached {statuses}; it is {self.run(run_id).status}")

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def stop_server(self) -> float:
        """Stop the server (as `should_exit`); returns how long that took."""
        started = time.monotonic()
        self.server.close()
        return time.monotonic() - started


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    url = f"sqlite:///{(tmp_path / 'tether.db').resolve()}"
    tether = Tether(url)
    tether.storage.migrate()
    key = tether.keys.create("browser-tests").secret
    assert key is not None
    worker = ThreadWorker(url).start()
    server = serve(tether, ServerConfig(dev=False))
    base = next(server)
    try:
        yield Dash(base, key, tether, worker, server)
    finally:
        server.close()
        worker.stop()
        tether.close()


# -- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (run scripts/browser, or apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, dash: Dash) -> Iterator[Any]:
    """A page of a fresh browser context (no cookies), which accepts confirmation dialogs."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


def login(page: Any, dash: Dash, path: str = "/") -> None:
    page.goto(dash.url + path)
    page.fill("input[name=key]", dash.key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(dash.url + path.split("?")[0]) + r"(\?.*)?$"))


@pytest.fixture
def logged_in(page: Any, dash: Dash) -> Any:
    login(page, dash)
    return page
