"""`tether serve` and `tether dev` as real processes: the API answers over HTTP with a key (and
holds no unauthenticated body in memory), the dev command runs tasks and the dashboard without a
login, and reloads when the code changes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from acceptance_support import TETHER_EXE, make_env, run_cli, wait_until

from tether import Tether

pytestmark = pytest.mark.slow

DEV_APP = '''
from tether import Tether

app = Tether()


@app.task(id="hello")
def hello(payload):
    return {"hello": payload["name"]}
'''

SECOND_TASK = '''

@app.task(id="added-later")
def added_later(payload):
    return "reloaded"
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log_path = cwd / "server.log"
        self.clients: list[httpx.Client] = []
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([str(TETHER_EXE), *args], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        for client in process.clients:
            client.close()
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)
        process._log.close()


def wait_http(url: str, process: Process, timeout: float = 30) -> None:
    def up() -> bool:
        if process.proc.poll() is not None:
            pytest.fail(f"the server exited ({process.proc.returncode}):\n{process.log()}")
        try:
            return httpx.get(url + "/api/v1/timezones", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout, lambda: f"{url} never answered:\n{process.log()}")


def wait_completed(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        try:
            run: dict[str, object] = client.get(f"/api/v3/runs/{run_id}").json()
        except httpx.TransportError:
            return None
        return run if run.get("isCompleted") else None

    return wait_until(done, timeout, f"run {run_id} did not complete")


def test_serve_answers_only_with_a_key(db_url: str, tmp_path: Path,
                                       processes: list[Process]) -> None:
    app = Tether(db_url)
    app.storage.migrate()
    secret = app.keys.create("serve-test").secret
    app.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(["serve", "--port", str(port)], tmp_path, make_env(db_url))
    processes.append(server)
    wait_http(url, server)
    assert httpx.get(url + "/api/v1/runs").status_code == 401
    answer = httpx.get(url + "/api/v1/runs", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == []
    assert server.stop() == 0


def test_serve_limits_request_bodies_to_the_size_given(db_url: str, tmp_path: Path,
                                                       processes: list[Process]) -> None:
    """TETHER_MAX_REQUEST_SIZE (the --max-request-size option's variable): 413 past it, after the
    key is checked."""
    app = Tether(db_url)
    app.storage.migrate()
    headers = {"Authorization": f"Bearer {app.keys.create('serve-test').secret}",
               "Content-Type": "application/json"}
    app.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/tasks/hello/trigger"
    env = {**make_env(db_url), "TETHER_MAX_REQUEST_SIZE": "1KB"}
    server = Process(["serve", "--port", str(port)], tmp_path, env)
    processes.append(server)
    wait_http(url.split("/api")[0], server)
    big = b'{"payload": "%b"}' % (b"x" * 1100)
    answer = httpx.post(url, content=big, headers=headers)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"].startswith(f"request body of {len(big)} bytes is over the "
                                             "limit of 1024 bytes")
    assert httpx.post(url, content=big, headers={"Content-Type": "application/json"}
                      ).status_code == 401
    under = httpx.post(url, content=big[-900:], headers=headers)  # read: not JSON, so a 400
    assert under.status_code == 400 and "not valid JSON" in under.json()["error"], under.text
    assert server.stop() == 0

    refused = run_cli("serve", "--max-request-size", "lots", env=make_env(db_url), cwd=tmp_path)
    assert refused.returncode == 2
    assert "'lots' is not a size" in refused.stderr


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def stream_without_a_key(url: str, size: int) -> tuple[int, int]:
    """POST a JSON body of `size` bytes to the trigger route without a key, writing it 1 MiB at a
    time while the server lets us; (the answer's status, the bytes of body written)."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /api/v1/tasks/hello/trigger HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    body = memoryview(b'{"payload": "' + b"x" * (size - 15) + b'"}')
    written = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            while written < size:
                written += sock.send(body[written:written + 1024 * 1024])
        except OSError:  # the server may close the connection once it has answered
            pass
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split()[1]), written


def test_serve_holds_no_unauthenticated_body_in_memory(db_url: str, tmp_path: Path,
                                                      processes: list[Process]) -> None:
    """50 MB sent without a key: the server answers 401 from the headers and its peak memory
    (VmHWM) stays where it was. Before it read and parsed the whole body first (~10x its size)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(["serve", "--port", str(port)], tmp_path, make_env(db_url))
    processes.append(server)
    wait_http(url, server)
    for _ in range(3):  # warm up: the code paths of a refusal run once before measuring
        assert stream_without_a_key(url, 100_000)[0] == 401
    before = memory_kib(server.proc.pid)
    started = time.monotonic()
    status, written = stream_without_a_key(url, 50_000_000)
    after = memory_kib(server.proc.pid)
    assert status == 401, server.log()
    assert written == 50_000_000
    grown = (after["VmHWM"] - before["VmHWM"]) // 1024
    assert grown <= 8, f"peak memory grew by {grown} MiB ({before} -> {after}) in " \
                       f"{time.monotonic() - started:.1f} s"
    assert server.stop() == 0


def test_dev_runs_tasks_serves_the_dashboard_and_reloads(tmp_path: Path,
                                                         processes: list[Process]) -> None:
    app_file = tmp_path / "app.py"
    app_file.write_text(DEV_APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = make_env(tmp_path / "dev.db")
    dev = Process(["dev", "app.py", "--port", str(port)], tmp_path, env)
    processes.append(dev)
    wait_http(url, dev)
    match = re.search(r"API key:\s+(tk_\S+)", dev.log())
    assert match, dev.log()
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {match[1]}"}, timeout=10)
    processes[-1].clients.append(client)
    assert (tmp_path / ".tether" / "dev-key").read_text().strip() == match[1]

    page = httpx.get(url + "/", follow_redirects=False)
    assert page.status_code == 200, "tether dev opens the dashboard without a login on 127.0.0.1"

    run = client.post("/api/v1/tasks/hello/trigger", json={"payload": {"name": "dev"}}).json()
    assert wait_completed(client, run["id"])["output"] == {"hello": "dev"}

    app_file.write_text(DEV_APP + SECOND_TASK)  # the worker restarts and registers the new task

    def triggered() -> str | None:
        try:  # the server is down for a moment while the process restarts
            answer = client.post("/api/v1/tasks/added-later/trigger", json={"payload": None})
        except httpx.TransportError:
            return None
        return str(answer.json()["id"]) if answer.status_code == 200 else None

    run_id = wait_until(triggered, 30, lambda: f"the new task never appeared:\n{dev.log()}")
    assert wait_completed(client, run_id, 60)["output"] == "reloaded"
    assert dev.stop(signal.SIGINT) == 0, dev.log()
