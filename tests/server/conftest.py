"""A real HTTP server for the API, client and dashboard tests: uvicorn serving `create_app` on a
free 127.0.0.1 port in a thread, over a fresh database of each backend, with one API key."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from tether import Tether
from tether.server import ServerConfig, create_app


@dataclass
class LiveServer:
    url: str
    key: str  # a valid API key's secret
    tether: Tether  # the server's app: same database, for arranging and checking state

    def client(self, key: str | None = None) -> httpx.Client:
        """An HTTP client with the server's key (or `key`; "" sends no Authorization header)."""
        secret = self.key if key is None else key
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tether: Tether, config: ServerConfig | None = None) -> Iterator[str]:
    """Serve `tether` until the generator is closed; yields the base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = config or ServerConfig(public_url=url)
    server = uvicorn.Server(uvicorn.Config(create_app(tether, config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(db_url: str) -> Iterator[LiveServer]:
    tether = Tether(db_url)
    tether.storage.migrate()
    key = tether.keys.create("tests")
    assert key.secret is not None
    port_url = serve(tether)
    url = next(port_url)
    try:
        yield LiveServer(url=url, key=key.secret, tether=tether)
    finally:
        port_url.close()
        tether.close()


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server (SQLite) whose requests may carry at most 1000 bytes of body."""
    tether = Tether(f"sqlite:///{(tmp_path / 'limited.db').resolve()}")
    tether.storage.migrate()
    key = tether.keys.create("tests")
    assert key.secret is not None
    port_url = serve(tether, ServerConfig(max_request_size=1000))
    try:
        yield LiveServer(url=next(port_url), key=key.secret, tether=tether)
    finally:
        port_url.close()
        tether.close()


@pytest.fixture
def dev_url(db_url: str) -> Iterator[str]:
    """The URL of a `tether dev` server: its dashboard opens without a login from 127.0.0.1."""
    tether = Tether(db_url)
    tether.storage.migrate()
    port_url = serve(tether, ServerConfig(dev=True))
    try:
        yield next(port_url)
    finally:
        port_url.close()
        tether.close()
