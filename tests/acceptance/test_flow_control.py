"""Flow control with real worker processes, on both backends: a RetryAfter, and an HTTP 429 with
Retry-After from a real stub server on 127.0.0.1, pause their key (no run of it starts until the
pause ends, other keys go on, no attempt counted); workers sharing a named rate limit never go
past it (the steps' own recorded times); a long wait for a limit parks the run and frees its
slot."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import (
    WorkerProcess,
    Workers,
    read_lines,
    wait_for_lines,
    wait_for_status,
    wait_until,
)

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow

PAUSE = 2


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path)]


class _Stub(BaseHTTPRequestHandler):
    """429 with Retry-After the first time a run calls, 200 after."""

    told: set[str]
    lock: threading.Lock

    def do_GET(self) -> None:
        run = self.headers.get("X-Run", "")
        with self.lock:
            first = run not in self.told
            self.told.add(run)
        body = b"slow down" if first else b"fine"
        self.send_response(429 if first else 200)
        if first:
            self.send_header("Retry-After", str(PAUSE))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    handler = type("Stub", (_Stub,), {"told": set(), "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/call"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("via", ["RetryAfter", "HTTP 429"])
def test_back_pressure_pauses_its_key_and_counts_no_attempt(
        app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
        workers: Workers, client: Tether, tmp_path: Path, stub_url: str, via: str) -> None:
    app = app_file("flow_app.py")
    start_worker(app, "--concurrency", "4")
    start_worker(app, "--concurrency", "4")
    told = {"n": 0, "key": "A"} | ({"push": PAUSE} if via == "RetryAfter" else {"url": stub_url})
    first = client.trigger("tenant-call", told, concurrency_key="A")
    wait_for_lines(tmp_path / "starts.log", 1, context=workers.describe)
    wait_until(lambda: client.storage.list_attempts(first.id), 10,
               lambda: "the first run's attempt never ended\n" + workers.describe())
    others = [client.trigger("tenant-call", {"n": n, "key": key}, concurrency_key=key)
              for n, key in ((1, "A"), (2, "B"), (3, "A"), (4, "B"))]
    for handle in [first, *others]:
        run = wait_for_status(client, handle.id, RunStatus.COMPLETED, timeout=30,
                              context=workers.describe)
        assert run.attempts == 1  # the deferral was not counted
    assert [a.status for a in client.storage.list_attempts(first.id)] == ["DEFERRED", "COMPLETED"]
    starts = _lines(tmp_path / "starts.log")
    told_at = starts[0]["at"]
    a_starts = sorted(s["at"] for s in starts[1:] if s["key"] == "A")
    b_starts = [s["at"] for s in starts if s["key"] == "B"]
    assert len(a_starts) == 3 and len(b_starts) == 2
    assert a_starts[0] >= told_at + PAUSE - 0.2, starts  # no run of A during the pause
    assert max(b_starts) < told_at + PAUSE, starts  # while B went on


def test_workers_sharing_a_named_limit_never_exceed_it(
        app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
        workers: Workers, client: Tether, tmp_path: Path) -> None:
    limit, burst, runs = 10, 2, 40
    client.rate_limits.set("shared", limit, "1s", burst=burst)
    app = app_file("flow_app.py")
    for _ in range(3):
        start_worker(app, "--concurrency", "8", "--queue", "rated")
    handles = client.batch_trigger("rated", list(range(runs // 2)))
    handles += client.batch_trigger("rated-sync", list(range(runs // 2, runs)))
    del handles
    takes = wait_for_lines(tmp_path / "takes.log", runs, timeout=60, context=workers.describe)
    times = sorted(json.loads(line)["at"] for line in takes)
    assert len({json.loads(line)["pid"] for line in takes}) >= 2  # shared across processes
    # in any one second: the rate plus the burst, and a unit of slack for the moments between
    # a unit's reserved time and the step's own clock reading
    for i, start in enumerate(times):
        within = sum(1 for t in times[i:] if t < start + 1.0)
        assert within <= limit + burst + 1, (start, within, times)
    spread = times[-1] - times[0]
    assert spread >= (runs - burst) / limit - 0.3, spread  # it was the limit that spaced them


def test_a_long_wait_for_a_limit_parks_the_run_and_frees_its_slot(
        app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
        workers: Workers, client: Tether, tmp_path: Path) -> None:
    client.rate_limits.set("slow", 1, "5s")
    start_worker(app_file("flow_app.py"), "--concurrency", "1", "--queue", "solo")
    parked = client.trigger("parker")
    wait_for_status(client, parked.id, RunStatus.WAITING, timeout=15, context=workers.describe)
    quick = client.trigger("quick")  # the worker's only slot is free: it runs now
    wait_for_status(client, quick.id, RunStatus.COMPLETED, timeout=10, context=workers.describe)
    assert client.runs.retrieve(parked.id).status == RunStatus.WAITING
    run = wait_for_status(client, parked.id, RunStatus.COMPLETED, timeout=20,
                          context=workers.describe)
    assert run.attempts == 1
    starts: dict[str, float] = {}
    for line in _lines(tmp_path / "starts.log"):  # (the replay after the wait logs again)
        starts.setdefault(line["n"], line["at"])
    assert starts["parker-1"] < starts["quick"] < starts["parker-2"]
    assert starts["parker-2"] - starts["parker-1"] >= 5 - 0.2
