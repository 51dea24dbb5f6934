"""Back-pressure with an injected clock: RetryAfter from a task or a step, and HTTP 429/503 errors
with Retry-After for tasks that respect it: the run comes back later without counting an
attempt, its key is paused (other keys go on), and a run told to wait for ever still ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from engine_helpers import attempt_outcomes, drain, record

from tether import (
    ConfigurationError,
    Context,
    ManualClock,
    Queue,
    Retry,
    RetryAfter,
    RunStatus,
    SyncContext,
    Tether,
    Worker,
)
from tether.backpressure import MAX_DEFERRALS


class FakeResponse:
    """An HTTP response as httpx and requests shape it (duck typing is all Tether looks at)."""

    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code, self.headers = status_code, headers


class FakeHTTPError(Exception):
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = FakeResponse(status_code, headers)


def test_retry_after_pauses_the_key_and_counts_no_attempt(app: Tether, clock: ManualClock) -> None:
    started: list[tuple[str, float]] = []
    told: set[str] = set()

    @app.task(queue="api")
    async def call(payload: dict[str, str], ctx: Context) -> str:
        started.append((payload["key"], clock.now()))
        if payload.get("push") and ctx.run_id not in told:
            told.add(ctx.run_id)
            await ctx.step("call", _overloaded)
        return payload["key"]

    first = call.trigger({"key": "A", "push": "yes"}, concurrency_key="A")
    drain(Worker(app))
    run = record(app, first.id)
    assert run.status == RunStatus.QUEUED and run.available_at == pytest.approx(clock.now() + 30)
    assert run.attempts == 0  # not counted
    assert attempt_outcomes(app, first.id) == ["DEFERRED"]
    [deferral] = app.storage.list_attempts(first.id)
    assert "provider overloaded" in (deferral.error or "")
    assert "key 'A' of queue 'api' paused" in (deferral.reason or "")
    assert app.runs.retrieve(first.id).attempts == 0

    other_a = call.trigger({"key": "A"}, concurrency_key="A")
    b = call.trigger({"key": "B"}, concurrency_key="B")
    worker = Worker(app)
    drain(worker)
    assert app.runs.retrieve(b.id).status == RunStatus.COMPLETED  # other keys go on
    assert record(app, other_a.id).status == RunStatus.QUEUED  # key A is paused
    due = app.storage.next_ready_at([call.id], None, clock.now())
    assert due == pytest.approx(clock.now() + 30)  # the worker wakes when the pause ends

    clock.advance(29)
    drain(worker)
    assert record(app, other_a.id).status == RunStatus.QUEUED
    clock.advance(1)
    drain(worker)
    assert app.runs.retrieve(other_a.id).status == RunStatus.COMPLETED
    done = app.runs.retrieve(first.id)
    assert done.status == RunStatus.COMPLETED and done.attempts == 1
    assert attempt_outcomes(app, first.id) == ["DEFERRED", "COMPLETED"]
    starts_a = [at for key, at in started if key == "A"]
    assert sorted(starts_a)[1] >= 1_000_000.0 + 30  # no run of A started during the pause


def _overloaded() -> None:
    raise RetryAfter(30, "provider overloaded")


def test_a_step_does_not_retry_back_pressure_in_place(app: Tether, clock: ManualClock) -> None:
    calls: list[int] = []

    @app.task
    def sync_task(payload: None, ctx: SyncContext) -> str:
        def flaky() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise RetryAfter(5)
            return "ok"

        return str(ctx.step("call", flaky, retry=Retry(max_attempts=5, min_delay=0, max_delay=0)))

    handle = sync_task.trigger()
    worker = Worker(app)
    drain(worker)
    assert calls == [1] and record(app, handle.id).available_at == pytest.approx(clock.now() + 5)
    clock.advance(5)
    drain(worker)
    assert app.runs.retrieve(handle.id).output == "ok" and calls == [1, 1]


@pytest.mark.parametrize("respect", [True, False])
def test_http_429_with_retry_after_when_the_task_respects_it(
        app: Tether, clock: ManualClock, respect: bool) -> None:
    @app.task(respect_retry_after=respect, retry=Retry(max_attempts=3, min_delay=1, max_delay=1,
                                                       jitter=False))
    async def fetch(payload: None, ctx: Context) -> str:
        if ctx.attempt == 1 and not app.storage.list_attempts(ctx.run_id):
            raise FakeHTTPError(429, {"retry-after": "12"})
        return "fetched"

    handle = fetch.trigger(concurrency_key="tenant-1")
    drain(Worker(app))
    run = record(app, handle.id)
    if respect:
        assert attempt_outcomes(app, handle.id) == ["DEFERRED"] and run.attempts == 0
        assert run.available_at == pytest.approx(clock.now() + 12)
    else:  # an ordinary failure: counted, retried by the policy
        assert attempt_outcomes(app, handle.id) == ["FAILED"] and run.attempts == 1
        assert run.available_at == pytest.approx(clock.now() + 1)


def test_other_http_errors_are_ordinary_failures(app: Tether, clock: ManualClock) -> None:
    @app.task(respect_retry_after=True, retry=Retry(max_attempts=1))
    async def fetch(payload: dict[str, Any], ctx: Context) -> str:
        raise FakeHTTPError(payload["status"], payload["headers"])

    handles = [fetch.trigger({"status": 500, "headers": {"Retry-After": "5"}}),
               fetch.trigger({"status": 429, "headers": {}}),
               fetch.trigger({"status": 503, "headers": {"Retry-After": "soon"}})]
    drain(Worker(app))
    for handle in handles:
        assert app.runs.retrieve(handle.id).status == RunStatus.FAILED


def test_told_to_wait_for_ever_a_run_still_ends(app: Tether, clock: ManualClock) -> None:
    @app.task(retry=Retry(max_attempts=2, min_delay=1, max_delay=1, jitter=False))
    async def hopeless(payload: None, ctx: Context) -> None:
        raise RetryAfter(1)

    handle = hopeless.trigger()
    worker = Worker(app)
    for _ in range(4 * MAX_DEFERRALS):
        drain(worker)
        if app.runs.retrieve(handle.id).status == RunStatus.FAILED:
            break
        clock.advance(1)
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.attempts == 2
    outcomes = attempt_outcomes(app, handle.id)
    assert outcomes.count("FAILED") == 2
    assert outcomes.count("DEFERRED") == 2 * (MAX_DEFERRALS - 1)


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "5", None, True, 86401])
def test_bad_retry_after_values_are_refused(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="RetryAfter takes"):
        RetryAfter(value)


def test_respect_retry_after_must_be_a_bool(app: Tether) -> None:
    with pytest.raises(ConfigurationError, match="respect_retry_after"):
        @app.task(respect_retry_after="yes")  # type: ignore[call-overload]
        async def nope(payload: None) -> None: ...


def test_in_a_limited_queue_no_run_of_the_key_starts_during_the_pause(
        app: Tether, clock: ManualClock) -> None:
    """Runs of a limited queue's key go one by one (and, once attempts are short, in line behind
    the running one): after a RetryAfter, neither the next in line nor any other run of the key
    starts before the pause ends."""
    starts: list[tuple[int, float]] = []

    @app.task(queue=Queue("limited", concurrency=1))
    async def one_by_one(payload: int, ctx: Context) -> int:
        starts.append((payload, clock.now()))
        if payload == 3 and ctx.attempt == 1 and len([s for s in starts if s[0] == 3]) == 1:
            raise RetryAfter(30)
        return payload

    handles = [one_by_one.trigger(n, concurrency_key="A") for n in range(6)]
    worker = Worker(app)
    drain(worker)
    statuses = [record(app, h.id).status for h in handles]
    assert statuses[:3] == [RunStatus.COMPLETED] * 3
    assert statuses[3:] == [RunStatus.QUEUED] * 3, statuses
    assert [n for n, _ in starts] == [0, 1, 2, 3]
    clock.advance(30)
    drain(worker)
    assert [app.runs.retrieve(h.id).output for h in handles] == list(range(6))
    assert all(at >= 1_000_000.0 + 30 for n, at in starts[4:])
    assert app.runs.retrieve(handles[3].id).attempts == 1


@pytest.fixture
def stub_429() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1: 503 with Retry-After (an HTTP date 20 s ahead of the
    app's clock) the first time, 200 after."""
    calls: list[str] = []

    class Stub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            first = len(calls) == 1
            self.send_response(503 if first else 200)
            if first:
                when = datetime.fromtimestamp(1_000_000.0 + 20, UTC)
                self.send_header("Retry-After", format_datetime(when, usegmt=True))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_requests_error_with_an_http_date_is_back_pressure(
        app: Tether, clock: ManualClock, stub_429: str) -> None:
    import requests

    @app.task(respect_retry_after=True)
    def fetch(payload: str, ctx: SyncContext) -> str:
        def get() -> str:
            response = requests.get(payload, timeout=5)
            response.raise_for_status()
            return response.text

        return str(ctx.step("get", get))

    handle = fetch.trigger(stub_429, concurrency_key="tenant-9")
    worker = Worker(app)
    drain(worker)
    run = record(app, handle.id)
    assert run.status == RunStatus.QUEUED and run.attempts == 0
    assert run.available_at == pytest.approx(clock.now() + 20, abs=1)
    assert app.storage.next_ready_at([fetch.id], None, clock.now()) == pytest.approx(
        clock.now() + 20, abs=1)
    clock.advance(20)
    drain(worker)
    assert app.runs.retrieve(handle.id).output == "ok"
