"""Running the server: `tether serve` (API + dashboard) and `tether dev` (worker + API + dashboard in
one process, restarted when the code changes)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import uvicorn

from tether.app import Tether
from tether.server.app import DEFAULT_MAX_REQUEST_SIZE, ServerConfig, create_app

log = logging.getLogger("tether.server")

DEV_KEY_FILE = Path(".tether") / "dev-key"


def uvicorn_server(tether: Tether, host: str, port: int, config: ServerConfig,
                   log_level: str = "info") -> uvicorn.Server:
    # timeout_graceful_shutdown: open live-update streams end instead of holding shutdown forever
    return uvicorn.Server(uvicorn.Config(create_app(tether, config), host=host, port=port,
                                         log_level=log_level.lower(), timeout_graceful_shutdown=3,
                                         server_header=False))


def serve(tether: Tether, host: str, port: int, config: ServerConfig, log_level: str = "info") -> None:
    """Serve until SIGTERM or Ctrl-C, then exit 0. uvicorn handles the signals while it serves and
    raises the one it caught again once it has shut down; the handlers set here make that a
    clean exit instead of a death by signal."""
    tether.storage.migrate()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn_server(tether, host, port, config, log_level).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def dev_key(tether: Tether, path: Path = DEV_KEY_FILE) -> str:
    """The development key kept in `.tether/dev-key`, created when missing or no longer valid."""
    if path.is_file():
        secret = path.read_text().strip()
        if tether.keys.verify(secret) is not None:
            return secret
    key = tether.keys.create("dev")
    assert key.secret is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key.secret + "\n")
    return key.secret


def run_dev_process(app_ref: str, host: str, port: int, concurrency: int, log_level: str,
                    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE) -> None:
    """One generation of `tether dev`: the worker on this thread's event loop (it owns the signals)
    and the HTTP server on a thread beside it. Ends when the worker stops (SIGINT/SIGTERM)."""
    from tether.loader import load_app
    from tether.worker.worker import Worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tether = load_app(app_ref)
    tether.storage.migrate()
    config = ServerConfig(dev=True, public_url=f"http://{host}:{port}",
                          max_request_size=max_request_size)
    server = uvicorn_server(tether, host, port, config, log_level)
    thread = threading.Thread(target=server.run, name="tether-http", daemon=True)
    thread.start()
    try:
        Worker(tether, concurrency=concurrency, shutdown_grace=5.0).run_forever()
    finally:
        server.should_exit = True
        thread.join(10)


def watched_paths(app_ref: str) -> list[Path]:
    """What `tether dev` watches: the app file's folder, or the working directory for a module."""
    ref = app_ref.partition(":")[0]
    if ref.endswith(".py") or "/" in ref:
        return [Path(ref).resolve().parent]
    return [Path(os.getcwd())]
