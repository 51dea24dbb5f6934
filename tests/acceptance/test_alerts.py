"""Webhook alerts from `tether serve`, as real processes: a worker fails a run for good, the
server POSTs a signed alert to a receiver started here, which refuses it at first; the server is
stopped (SIGTERM or SIGKILL) and started again, and the alert arrives, once, signed, delivered by
the restarted server. A queue whose oldest ready run waits too long is alerted about once (that
server configured by TETHER_ALERT_* variables instead of options); so is a worker whose event
loop a task blocks."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import (
    TETHER_EXE,
    WorkerProcess,
    Workers,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow

SECRET = "test-alert-secret-0123456789"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers `status`."""

    def __init__(self) -> None:
        self.status = 500
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(length, 1 << 20))
                status = receiver.status
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body,
                                          status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`tether serve` with alerts, its output in a log file; killed at teardown."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.log_path = cwd / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(TETHER_EXE), "serve", "--port", str(free_port()), *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> Server:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log()
            return "serving 1 task(s): tether.alert" in self.log()

        wait_until(ready, 30, lambda: f"serve never started its alerts\n{self.log()}")
        return self

    def stop(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()


@pytest.fixture
def servers(tmp_path: Path, tether_env: dict[str, str]) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        started.append(Server(tmp_path, {**tether_env, **(env or {})}, *args).wait_ready())
        return started[-1]

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_failed_run_alert_survives_a_server_restart(
    stop: signal.Signals, receiver: Receiver, servers: Callable[..., Server],
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether,
) -> None:
    options = ("--alert-webhook", receiver.url, "--alert-secret", SECRET,
               "--public-url", "https://tether.example.com")
    first = servers(*options)
    start_worker(app_file("hooks_app.py"))
    run_id = client.trigger("fails", {"order": 9}).id
    run = wait_for_status(client, run_id, RunStatus.FAILED, context=workers.describe)

    wait_until(lambda: receiver.received, 20, lambda: f"no alert came\n{first.log()}")
    first.stop(stop)  # refused once (500); the alert is still owed
    assert [status for _, _, status in receiver.received] == [500]
    receiver.status = 200

    second = servers(*options)
    wait_until(lambda: any(s == 200 for _, _, s in receiver.received), 30,
               lambda: f"the alert never arrived after the restart\n{second.log()}")
    time.sleep(3)  # nothing more comes: not the same alert again, not a second one
    assert len(receiver.received) == 2, receiver.received
    (refused, _, _), (headers, body, _) = receiver.received
    assert headers["x-tether-signature"] == signature(body)
    assert headers["content-type"] == "application/json"
    event = json.loads(body)
    assert headers["x-tether-event-id"] == refused["x-tether-event-id"] == event["id"]
    assert headers["x-tether-event"] == "run.failed"
    assert event["type"] == "run.failed" and event["createdAt"].endswith("Z")
    data = event["data"]
    assert data["runId"] == run_id and data["task"] == "fails" and data["status"] == "FAILED"
    assert run.error is not None and data["error"]["message"] == run.error["message"]
    assert data["dashboardUrl"] == f"https://tether.example.com/runs/{run_id}"
    alert_runs = client.runs.list(task="tether.alert")
    assert [r.status for r in alert_runs] == [RunStatus.COMPLETED]
    assert alert_runs[0].attempts >= 2 and alert_runs[0].queue == "tether-alerts"


def test_a_queue_backlog_is_alerted_once_per_episode(
    receiver: Receiver, servers: Callable[..., Server], client: Tether,
) -> None:
    receiver.status = 200
    # configured by the environment alone (TETHER_ALERT_WEBHOOKS, TETHER_ALERT_SECRET)
    server = servers(env={"TETHER_ALERT_WEBHOOKS": f" {receiver.url} ,{receiver.url}",
                          "TETHER_ALERT_SECRET": SECRET, "TETHER_ALERT_QUEUE_WAIT": "1s"})
    assert f"Alerts to http://127.0.0.1:{receiver.server.server_address[1]}/…" in server.log()
    @client.task(id="nobody-serves-this", queue="stuck")
    def never_run(payload: Any) -> None:
        raise AssertionError("no worker serves this task")

    never_run.trigger({"n": 1})  # no worker serves the queue: its runs wait
    never_run.trigger({"n": 2})
    wait_until(lambda: receiver.received, 20, "no backlog alert came")
    time.sleep(7)  # the detector looks every 5 s: still one episode, one alert
    assert len(receiver.received) == 1
    headers, body, _ = receiver.received[0]
    event = json.loads(body)
    assert headers["x-tether-signature"] == signature(body)
    assert event["type"] == "queue.backlog"
    assert event["data"]["queue"] == "stuck" and event["data"]["oldestReadySeconds"] > 1


def test_a_stalled_worker_is_alerted_once(
    receiver: Receiver, servers: Callable[..., Server], app_file: Callable[[str], Path],
    start_worker: Callable[..., WorkerProcess], workers: Workers, client: Tether,
) -> None:
    """A real worker whose event loop an async task blocks for 4 s: one signed
    `worker.stalled` alert naming that worker, however long the stall lasts."""
    receiver.status = 200
    servers("--alert-webhook", receiver.url, "--alert-secret", SECRET)
    worker = start_worker(app_file("stall_app.py"))
    blocked = client.trigger("blocks-the-loop", {"seconds": 4})
    wait_until(lambda: receiver.received, 20,
               lambda: f"no stall alert came\n{workers.describe()}")
    wait_for_status(client, blocked.id, RunStatus.COMPLETED, context=workers.describe)
    time.sleep(2)  # the worker recovered: nothing more comes
    assert len(receiver.received) == 1, receiver.received
    headers, body, _ = receiver.received[0]
    assert headers["x-tether-signature"] == signature(body)
    assert headers["x-tether-event"] == "worker.stalled"
    event = json.loads(body)
    assert event["type"] == "worker.stalled"
    assert event["data"]["pid"] == worker.pid and event["data"]["stalls"] == 1
    [listed] = [w for w in client.workers.list() if w.pid == worker.pid]
    assert event["data"]["workerId"] == listed.id
