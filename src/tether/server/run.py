"""Running the server: `tether serve` (API + dashboard) and `tether dev` (worker + API + dashboard in
one process, restarted when the code changes)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path

import uvicorn

from tether.alerts.config import AlertConfig
from tether.app import Tether
from tether.errors import ConfigurationError, TetherError
from tether.observe.otlp import configure
from tether.observe.tracing import LOG_FORMAT, log_lines_name_ids
from tether.server.app import ServerConfig, create_app

log = logging.getLogger("tether.server")

DEV_KEY_FILE = Path(".tether") / "dev-key"


BIND_FAILURES = {
    errno.EADDRINUSE: "address already in use (another process holds it; choose another with "
                      "--port)",
    errno.EACCES: "permission denied (ports below 1024 need privileges; choose another with "
                  "--port)",
    errno.EADDRNOTAVAIL: "no such address on this machine (check --host)",
}


def listen_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before anything else starts: a port in use is one
    clear error at once (uvicorn would log it and leave `tether dev`'s worker running). `tether
    dev` keeps it across restarts, so requests sent meanwhile wait instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:  # socket.gaierror too: a host name that does not resolve
        sock.close()
        reason = BIND_FAILURES.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
        if isinstance(exc, socket.gaierror):
            reason += " (check --host)"
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_server(tether: Tether, sock: socket.socket, config: ServerConfig,
                   log_level: str = "info") -> uvicorn.Server:
    # timeout_graceful_shutdown: open live-update streams end instead of holding shutdown forever
    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(create_app(tether, config), host=host, port=port,
                                         log_level=log_level.lower(), timeout_graceful_shutdown=3,
                                         server_header=False))


def serve(tether: Tether, sock: socket.socket, config: ServerConfig,
          log_level: str = "info", alerts: AlertConfig | None = None) -> None:
    """Serve on `sock` (see listen_socket) until SIGTERM or Ctrl-C, then exit 0. uvicorn handles
    the signals while it serves and raises the one it caught again once it has shut down; the
    handlers set here make that a clean exit instead of a death by signal. With `alerts`
    configured, the alert detector and deliverer run beside it (tether/alerts)."""
    tether.storage.migrate()
    service = None
    if alerts is not None and alerts.enabled:
        from tether.alerts.service import AlertService

        service = AlertService(tether, alerts)
        service.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    flush = configure("tether-server")
    log_lines_name_ids()
    try:
        uvicorn_server(tether, sock, config, log_level).run(sockets=[sock])
    finally:
        if service is not None:
            service.stop()
        if flush is not None:
            flush()


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


def run_dev_process(app_ref: str, sock: socket.socket, url: str, concurrency: int,
                    log_level: str, max_request_size: int | None = None) -> None:
    """One generation of `tether dev`: the worker on this thread's event loop (it owns the signals)
    and the HTTP server, on `sock`, on a thread beside it. Ends when the worker stops (SIGINT or
    SIGTERM)."""
    from tether.loader import load_app
    from tether.observe.otel_metrics import configure_from_env
    from tether.worker.worker import Worker

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    tether = load_app(app_ref)
    tether.storage.migrate()
    flush = configure("tether-dev")  # after the app's import: its own provider comes first
    configure_from_env("tether-dev")
    log_lines_name_ids()
    config = ServerConfig(dev=True, public_url=url, max_request_size=max_request_size)
    server = uvicorn_server(tether, sock, config, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tether-http",
                              daemon=True)
    thread.start()
    try:
        Worker(tether, concurrency=concurrency, shutdown_grace=5.0).run_forever()
    finally:
        server.should_exit = True
        thread.join(10)
        if flush is not None:
            flush()


def run_dev_generation(app_ref: str, sock: socket.socket, url: str, concurrency: int,
                       log_level: str, max_request_size: int | None,
                       show_traceback: bool) -> None:
    """`run_dev_process` in a process the reloader starts: an app that does not load (a syntax
    error, an exception at import) is one line, and the reloader waits for the next change."""
    try:
        run_dev_process(app_ref, sock, url, concurrency, log_level, max_request_size)
    except TetherError as exc:
        if show_traceback:
            traceback.print_exception(exc)
        print(f"Error: {exc}\n  (tether dev restarts when a file changes)", file=sys.stderr)


def watched_paths(app_ref: str) -> list[Path]:
    """What `tether dev` watches: the app file's folder, or the working directory for a module."""
    ref = app_ref.partition(":")[0]
    if ref.endswith(".py") or "/" in ref:
        return [Path(ref).resolve().parent]
    return [Path(os.getcwd())]
