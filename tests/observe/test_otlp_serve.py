"""Real `tether serve` and `tether worker` processes, both exporting over OTLP/HTTP from the
OTEL_* environment alone to a receiver started here: a trigger over HTTP with a `traceparent`
header is one trace from the caller's span, through the server's trigger span, to the worker's
execution of the run and its step; `tether dev` likewise."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from otlp_receiver import ReceivedSpan, otlp_receiver

# the helpers of the acceptance tests, which start real workers the same way
sys.path.insert(0, str(Path(__file__).parent.parent / "acceptance"))
from acceptance_support import (
    READY_LINE,
    TETHER_EXE,
    otel_env,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow
APP = Path(__file__).parent / "apps" / "traced_app.py"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen([str(TETHER_EXE), *args], cwd=log_path.parent, env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT)


def set_up(db_url: str, tmp_path: Path, app_name: str) -> tuple[Path, Tether, str, int]:
    """The app copied into `tmp_path`, the schema made, an API key and a free port: (the app's
    file, a client the caller closes, the key, the port)."""
    app_file = tmp_path / app_name
    shutil.copyfile(APP.with_name(app_name), app_file)
    client = Tether(db_url)
    client.storage.migrate()
    key = client.keys.create("otlp").secret
    assert key is not None
    return app_file, client, key, free_port()


def stop(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM: the command shuts down, flushing the spans it holds; exits 0."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")


def test_a_trigger_over_http_is_one_trace_across_server_and_worker(db_url: str,
                                                                  tmp_path: Path) -> None:
    app_file, client, key, port = set_up(db_url, tmp_path, APP.name)
    url = f"http://127.0.0.1:{port}"
    server_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
    with otlp_receiver() as receiver:
        env = otel_env(db_url, receiver.endpoint, OTEL_METRICS_EXPORTER="none",
                       TETHER_TRACE_STEP_MIN_MS="0")
        server = start(["serve", "--port", str(port)], env, server_log)
        worker = start(["worker", str(app_file)], env, worker_log)
        try:
            wait_until(lambda: READY_LINE in worker_log.read_text(errors="replace"), 20,
                       lambda: "the worker never served\n" + worker_log.read_text())

            def answers() -> bool:
                assert server.poll() is None, server_log.read_text(errors="replace")
                try:
                    return httpx.get(url + "/api/v1/timezones", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(answers, 30, lambda: "serve never answered\n" + server_log.read_text())
            answer = httpx.post(f"{url}/api/v1/tasks/child/trigger", json={"payload": 4},
                                headers={"Authorization": f"Bearer {key}",
                                         "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
                                timeout=10)
            assert answer.status_code == 200, answer.text
            run_id = answer.json()["id"]
            run = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=30,
                                  context=lambda: worker_log.read_text(errors="replace"))
            assert run.output == 8
            stop(server, server_log)
            stop(worker, worker_log)
        finally:
            for proc in (server, worker):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            client.close()
        time.sleep(0.1)  # (the receiver answered each export before the processes exited)
        received = receiver.received()

    assert f"exporting traces over OTLP/HTTP to {receiver.endpoint}" in server_log.read_text()
    # one trace, but for the server's own spans of the readiness probes (FastAPI traces each
    # request once a provider is installed)
    probes = {s.trace_id for s in received if s.name == "GET /api/v1/timezones"}
    shown = "\n".join(repr((s.name, s.service, f"{s.trace_id:032x}", s.parent_id))
                      for s in received)
    assert {f"{s.trace_id:032x}" for s in received if s.trace_id not in probes} == {TRACE_ID}, \
        shown
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in received:
        by_name.setdefault(span.name, []).append(span)
    [trigger], [segment], [step] = by_name["trigger child"], by_name["run child"], \
        by_name["step inner"]
    assert trigger.service == "tether-server" and trigger.kind == 4  # SPAN_KIND_PRODUCER
    assert trigger.attributes["tether.run_id"] == run_id
    # the server's trigger span is under the request's traceparent (directly, or under a span
    # of the server's own request handling)
    by_id = {s.span_id: s for s in received}
    at = trigger
    while at.parent_id in by_id:
        at = by_id[at.parent_id]
    assert at.parent_id is not None and format(at.parent_id, "016x") == PARENT_ID, received
    assert segment.service == "tether-worker" and segment.parent_id == trigger.span_id
    assert segment.attributes["tether.run_id"] == run_id
    assert step.service == "tether-worker" and step.parent_id == segment.span_id


def test_tether_dev_exports_its_trace_and_names_it_in_its_log(db_url: str,
                                                              tmp_path: Path) -> None:
    """`tether dev` (worker and server in one process, service `tether-dev`): the same trace
    from the request's traceparent, and the run's log line names it."""
    app_file, client, key, port = set_up(db_url, tmp_path, "logging_app.py")
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dev.log"
    with otlp_receiver() as receiver:
        env = otel_env(db_url, receiver.endpoint, OTEL_METRICS_EXPORTER="none")
        dev = start(["dev", app_file.name, "--no-reload", "--port", str(port)], env, log_path)
        try:
            wait_until(lambda: READY_LINE in log_path.read_text(errors="replace"), 30,
                       lambda: "tether dev never served\n" + log_path.read_text())
            answer = httpx.post(f"{url}/api/v1/tasks/logs/trigger", json={"payload": None},
                                headers={"Authorization": f"Bearer {key}",
                                         "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
                                timeout=10)
            assert answer.status_code == 200, answer.text
            wait_for_status(client, answer.json()["id"], RunStatus.COMPLETED, timeout=30,
                            context=lambda: log_path.read_text(errors="replace"))
            stop(dev, log_path)
        finally:
            if dev.poll() is None:
                dev.kill()
                dev.wait(10)
            client.close()
        received = receiver.received()
    spans = {s.name: s for s in received if f"{s.trace_id:032x}" == TRACE_ID}
    trigger, segment = spans["trigger logs"], spans["run logs"]
    assert trigger.service == segment.service == "tether-dev"
    assert segment.parent_id == trigger.span_id
    line = f"INFO logging_app trace={TRACE_ID} span={segment.span_id:016x}: inside the run"
    assert line in log_path.read_text(errors="replace")
