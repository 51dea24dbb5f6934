"""tether.Client against a real server (uvicorn, `live_server`) on each backend, with a real
worker in a thread on the same database running the small app below."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel

import tether.client
from tether import (
    AuthenticationError,
    BatchItem,
    Client,
    ConfigurationError,
    Context,
    InvalidTransition,
    PayloadError,
    RequestFailed,
    Retry,
    Run,
    RunFailed,
    RunNotFound,
    RunStatus,
    ServerUnavailable,
    Tether,
    TokenNotFound,
    TokenStatus,
    TokenTimedOut,
    UnknownTask,
    Worker,
)

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

T = TypeVar("T")
WAIT = 20.0  # seconds any single wait in these tests may take


class Order(BaseModel):
    sku: str
    qty: int


def build_app(url: str) -> Tether:
    app = Tether(url)

    @app.task(id="echo")
    def echo(payload: Any) -> Any:
        return payload

    @app.task(id="explode", retry=Retry(max_attempts=1))
    def explode(payload: Any) -> Any:
        raise ValueError(f"boom {payload}")

    @app.task(id="await-token")
    async def await_token(payload: dict[str, str], ctx: Context) -> Any:
        return {"got": await ctx.wait_for_token(payload["token"])}

    @app.task(id="order")
    def order(payload: Order) -> int:
        return payload.qty

    return app


@pytest.fixture
def worker(live_server: LiveServer) -> Iterator[Tether]:
    """A worker in a thread, on the server's database; its tasks are registered when it yields."""
    app = build_app(live_server.tether.database_url)
    work = Worker(app, concurrency=8, shutdown_grace=2)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(work.run(),), daemon=True)
    thread.start()
    until(lambda: live_server.tether.storage.get_task("echo"), "the worker never registered")
    try:
        yield app
    finally:
        loop.call_soon_threadsafe(work.stop)
        thread.join(WAIT)
        # Worker.run returns before its housekeeping thread has finished its last tick; closing
        # the storage under that thread can crash SQLite, so wait for it first.
        if work._housekeeper is not None:
            work._housekeeper.join(WAIT)
        loop.close()
        app.close()


@pytest.fixture
def client(live_server: LiveServer, worker: Tether) -> Iterator[Client]:
    with Client(live_server.url, live_server.key) as api:
        yield api


def until(predicate: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s: {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_run(live_server: LiveServer, run_id: str) -> Run:
    return live_server.tether.runs.retrieve(run_id)


# -- triggering and handles ----------------------------------------------------------------------
def test_trigger_and_wait_for_the_result(client: Client, live_server: LiveServer) -> None:
    handle = client.trigger("echo", {"hello": "world"})
    assert handle.id.startswith("run_") and handle.is_cached is False
    assert handle.result(timeout=WAIT) == {"hello": "world"}
    assert handle.status() == RunStatus.COMPLETED
    run = handle.retrieve()
    assert run.task_id == "echo" and run.output == {"hello": "world"}
    assert run.payload == {"hello": "world"} and run.attempts == 1
    assert run.created_at.tzinfo is not None and run.finished_at is not None
    assert server_run(live_server, handle.id).status == RunStatus.COMPLETED


@pytest.mark.parametrize("payload", ["plain text", 42, None, [1, "two"], {"nested": {"a": [True]}}])
def test_payloads_of_every_json_kind_arrive_unchanged(client: Client, payload: Any) -> None:
    assert client.trigger("echo", payload).result(timeout=WAIT) == payload


def test_trigger_options_reach_the_run(client: Client, live_server: LiveServer) -> None:
    handle = client.trigger("echo", 1, tags=["user:7", "a"], metadata={"source": "api"},
                            concurrency_key="user:7", max_attempts=5, queue="custom",
                            priority=3, ttl=timedelta(hours=1))
    handle.result(timeout=WAIT)
    stored = server_run(live_server, handle.id)
    assert stored.tags == ["a", "user:7"] and stored.metadata == {"source": "api"}
    assert stored.concurrency_key == "user:7" and stored.max_attempts == 5
    assert stored.queue == "custom" and stored.priority == 3
    seen = client.runs.retrieve(handle.id)
    assert seen.tags == ["a", "user:7"] and seen.metadata == {"source": "api"}


def test_idempotency_key_returns_the_first_run(client: Client, live_server: LiveServer) -> None:
    first = client.trigger("echo", 1, idempotency_key="order-42", idempotency_key_ttl="1h")
    again = client.trigger("echo", 2, idempotency_key="order-42")
    assert again.id == first.id and again.is_cached and not first.is_cached
    assert first.result(timeout=WAIT) == 1
    assert client.runs.retrieve(first.id).idempotency_key == "order-42"
    assert len(live_server.tether.runs.list(task="echo")) == 1


def test_delayed_trigger_and_reschedule(client: Client, live_server: LiveServer) -> None:
    handle = client.trigger("echo", "later", delay=timedelta(hours=1))
    assert handle.status() == RunStatus.DELAYED
    moved = client.runs.reschedule(handle.id, "2h")
    assert moved.status == RunStatus.DELAYED and moved.available_at is not None
    assert moved.available_at > datetime.now(UTC) + timedelta(minutes=90)
    soon = client.runs.reschedule(handle.id, datetime.now(UTC) + timedelta(milliseconds=200))
    assert soon.status == RunStatus.DELAYED
    assert handle.result(timeout=WAIT) == "later"
    with pytest.raises(InvalidTransition):
        client.runs.reschedule(handle.id, "1h")


def test_result_raises_run_failed_and_times_out(client: Client, live_server: LiveServer) -> None:
    failing = client.trigger("explode", "x")
    with pytest.raises(RunFailed) as caught:
        failing.result(timeout=WAIT)
    assert caught.value.status == RunStatus.FAILED and caught.value.run_id == failing.id
    assert caught.value.error is not None and "boom x" in caught.value.error["message"]
    assert "boom x" in str(caught.value)
    assert server_run(live_server, failing.id).status == RunStatus.FAILED
    later = client.trigger("echo", 1, delay="1h")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        later.result(timeout=0.3)
    assert time.monotonic() - started < 5


def test_result_async(client: Client) -> None:
    handle = client.trigger("echo", "async")
    assert asyncio.run(handle.result_async(timeout=WAIT)) == "async"


def test_batch_trigger_keeps_the_items_order(client: Client, live_server: LiveServer) -> None:
    handles = client.batch_trigger("echo", [{"n": 1}, BatchItem({"n": 2}, tags=["second"]), {"n": 3}],
                                   tags=["batch"])
    assert len({h.id for h in handles}) == 3
    assert [h.result(timeout=WAIT) for h in handles] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert server_run(live_server, handles[1].id).tags == ["second"]
    assert server_run(live_server, handles[0].id).tags == ["batch"]
    assert client.batch_trigger("echo", []) == []


# -- managing runs -------------------------------------------------------------------------------
def test_list_filters_and_pages(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [client.trigger("echo", n, tags=["listed"]).id for n in range(5)]
    failed = client.trigger("explode", "y")
    for run_id in ids:
        client.runs.handle(run_id).result(timeout=WAIT)
    with pytest.raises(RunFailed):
        failed.result(timeout=WAIT)
    monkeypatch.setattr(tether.client, "PAGE_SIZE", 2)  # follow the cursor across pages
    listed = client.runs.list(tag="listed", limit=10)
    assert [r.id for r in listed] == ids[::-1]
    assert all(r.status == RunStatus.COMPLETED and r.task_id == "echo" for r in listed)
    assert [r.id for r in client.runs.list(tag="listed", limit=3)] == ids[::-1][:3]
    assert [r.id for r in client.runs.list(tag="listed", before=ids[2])] == ids[:2][::-1]
    assert [r.id for r in client.runs.list(status="failed")] == [failed.id]
    assert [r.id for r in client.runs.list(task=["explode"], status=["FAILED", "QUEUED"])] \
        == [failed.id]
    assert client.runs.list(tag="nothing-has-this") == []
    with pytest.raises(ConfigurationError):
        client.runs.list(status="SLEEPY")


def test_cancel_replay_and_retry(client: Client, live_server: LiveServer) -> None:
    delayed = client.trigger("echo", "never", delay="1h", tags=["t"])
    canceled = client.runs.cancel(delayed.id)
    assert canceled.status == RunStatus.CANCELED
    assert server_run(live_server, delayed.id).status == RunStatus.CANCELED
    with pytest.raises(InvalidTransition):
        client.runs.cancel(delayed.id)
    with pytest.raises(RunFailed):
        delayed.result(timeout=WAIT)
    replayed = client.runs.replay(delayed.id)
    assert replayed.id != delayed.id and replayed.result(timeout=WAIT) == "never"
    assert client.runs.retrieve(replayed.id).tags == ["t"]
    retried = client.runs.retry(delayed.id)
    assert retried.id == delayed.id and not retried.is_final
    assert delayed.result(timeout=WAIT) == "never"
    with pytest.raises(InvalidTransition):
        client.runs.retry(delayed.id)  # completed runs do not retry


def test_unknown_runs_raise_run_not_found(client: Client) -> None:
    for call in (client.runs.retrieve, client.runs.cancel, client.runs.replay, client.runs.retry,
                 client.runs.handle):
        with pytest.raises(RunNotFound) as caught:
            call("run_does_not_exist")
        assert caught.value.run_id == "run_does_not_exist"
    with pytest.raises(RunNotFound):
        client.runs.reschedule("run_does_not_exist", "1m")


# -- tokens --------------------------------------------------------------------------------------
def test_tokens_create_retrieve_list_complete(client: Client, live_server: LiveServer) -> None:
    token = client.tokens.create(timeout="1h", tags=["review"], idempotency_key="tok-1")
    assert token.id.startswith("waitpoint_") and token.status == TokenStatus.WAITING
    assert token.tags == ["review"] and token.timeout_at is not None
    assert client.tokens.create(idempotency_key="tok-1").id == token.id
    run = client.trigger("await-token", {"token": token.id})
    until(lambda: client.runs.retrieve(run.id).status == RunStatus.WAITING, "the run never waited")
    assert token.id in [t.id for t in client.tokens.list(status="WAITING")]
    done = client.tokens.complete(token.id, {"approved": True})
    assert done.status == TokenStatus.COMPLETED and done.completed_at is not None
    assert done.output == {"approved": True}
    assert client.tokens.complete(token.id, {"approved": False}).output == {"approved": True}
    assert run.result(timeout=WAIT) == {"got": {"approved": True}}
    assert client.tokens.retrieve(token.id).output == {"approved": True}
    assert [t.id for t in client.tokens.list(status=["completed"], limit=5)] == [token.id]
    assert live_server.tether.tokens.retrieve(token.id).status == TokenStatus.COMPLETED


def test_token_errors(client: Client) -> None:
    with pytest.raises(TokenNotFound):
        client.tokens.retrieve("waitpoint_missing")
    with pytest.raises(TokenNotFound):
        client.tokens.complete("waitpoint_missing", 1)
    short = client.tokens.create(timeout=timedelta(milliseconds=300))
    time.sleep(0.6)
    with pytest.raises(TokenTimedOut):
        client.tokens.complete(short.id, 1)
    assert client.tokens.retrieve(short.id).status == TokenStatus.TIMED_OUT
    with pytest.raises(ConfigurationError):
        client.tokens.list(status="DONE")


# -- errors --------------------------------------------------------------------------------------
def test_unknown_task_and_invalid_payloads(client: Client) -> None:
    with pytest.raises(UnknownTask) as caught:
        client.trigger("no-such-task", {})
    assert caught.value.task_id == "no-such-task" and "no-such-task" in str(caught.value)
    with pytest.raises(UnknownTask):
        client.batch_trigger("no-such-task", [1, 2])
    with pytest.raises(PayloadError) as invalid:
        client.trigger("order", {"sku": "a", "qty": "many"})
    assert "qty" in str(invalid.value)
    assert client.trigger("order", {"sku": "a", "qty": 3}).result(timeout=WAIT) == 3
    with pytest.raises(PayloadError):
        client.trigger("echo", {1, 2})  # not JSON: refused before anything is sent


def test_invalid_options(client: Client) -> None:
    with pytest.raises(ConfigurationError, match="tags"):
        client.trigger("echo", 1, tags=[f"t{n}" for n in range(11)])
    with pytest.raises(ConfigurationError, match="unknown trigger option"):
        client.trigger("echo", 1, colour="blue")
    with pytest.raises(ConfigurationError, match="delay"):
        client.trigger("echo", 1, delay="soon")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        client.trigger("echo", 1, delay=datetime(2030, 1, 1))


def test_a_wrong_key_is_an_authentication_error(live_server: LiveServer, worker: Tether) -> None:
    with Client(live_server.url, "tk_wrong") as wrong, pytest.raises(AuthenticationError):
        wrong.trigger("echo", 1)
    revoked = live_server.tether.keys.create("soon-revoked")
    assert revoked.secret is not None
    live_server.tether.keys.revoke(revoked.id)
    with Client(live_server.url, revoked.secret) as old, pytest.raises(AuthenticationError):
        old.runs.list()
    with pytest.raises(ConfigurationError):
        Client(live_server.url, "")
    with pytest.raises(ConfigurationError):
        Client("127.0.0.1:8030", live_server.key)


def test_an_unreachable_server_is_server_unavailable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "tk_any", retries=1) as nobody:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match="cannot reach"):
            nobody.trigger("echo", 1)
        with pytest.raises(ServerUnavailable):
            nobody.runs.retrieve("run_x")
        assert time.monotonic() - started < 10


def test_the_context_manager_closes_the_connection(live_server: LiveServer, worker: Tether) -> None:
    with Client(live_server.url, live_server.key) as api:
        assert api.runs.list() == []
        assert repr(api) == f"<tether.Client {live_server.url}>"
    with pytest.raises(RuntimeError):  # httpx refuses requests on a closed client
        api.runs.list()


# -- the transport, without a server ---------------------------------------------------------------
def test_retries_resend_the_same_request_key_and_give_up_clearly() -> None:
    seen: list[str] = []
    answers = iter([httpx.Response(503, json={"error": "database restarting"}),
                    httpx.Response(200, json={"id": "run_1", "isCached": False})])

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-trigger-request-idempotency-key"])
        return next(answers)

    with Client("http://tether.test", "tk_x", transport=httpx.MockTransport(reply)) as api:
        handle = api.trigger("echo", 1)
    assert handle.id == "run_1" and repr(handle) == "<RemoteRunHandle run_1>"
    assert len(seen) == 2 and seen[0] == seen[1]

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "database unavailable"})

    with Client("http://tether.test", "tk_x", retries=1, transport=httpx.MockTransport(down)) as api, \
            pytest.raises(ServerUnavailable, match="database unavailable"):
        api.runs.list()


def test_other_error_answers_are_request_failed() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="Internal Server Error")

    with Client("http://tether.test", "tk_x", transport=httpx.MockTransport(broken)) as api, \
            pytest.raises(RequestFailed) as caught:
        api.runs.retrieve("run_1")
    assert caught.value.status_code == 500 and "Internal Server Error" in str(caught.value)
