"""Who is asking is checked from the headers, before a body is read: without a valid key (API),
signature (callback and upload URLs) or session (dashboard forms) the answer comes while the
promised body has not even arrived. And a body may be at most `max_request_size` bytes: 413 at
once by its Content-Length, or as soon as a chunked body passes the limit. Raw sockets show what
the server answers before the body it was promised arrives."""

from __future__ import annotations

import asyncio
import json
import re
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from raw_http import RawAnswer, connect, raw_head, raw_request, read_answer

from tether import Tether
from tether.server import create_app
from tether.server.guard import Access, access_of

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

PROMISED = 20_000_000  # bytes the headers announce; one is sent
LIMIT = 32 * 1024 * 1024  # the default max_request_size
TRIGGER = "/api/v1/tasks/echo/trigger"
MISSING = ("Missing API key: send 'Authorization: Bearer <key>' (create one with: tether keys "
           "create)")
INVALID = "Invalid API key: it is unknown or was revoked"
# Every kind of API route that reads a body, and a path no route has: all need a key first.
BODY_ROUTES = [
    ("POST", TRIGGER), ("POST", "/api/v3/batches"), ("POST", "/api/v3/batches/batch_x/items"),
    ("POST", "/api/v2/tasks/batch"), ("POST", "/api/v1/runs/run_x/replay"),
    ("POST", "/api/v1/runs/run_x/reschedule"), ("POST", "/api/v1/runs/run_x/tags"),
    ("PUT", "/api/v1/runs/run_x/metadata"), ("POST", "/api/v1/waitpoints/tokens"),
    ("POST", "/api/v1/waitpoints/tokens/waitpoint_x/complete"), ("POST", "/api/v1/schedules"),
    ("PUT", "/api/v1/schedules/sched_x"), ("POST", "/api/v1/queues/q/pause"),
    ("PUT", "/api/v2/packets/big.json"), ("POST", "/api/v1/nowhere"),
]


def promising(size: int = PROMISED, key: str | None = None, **headers: str) -> dict[str, str]:
    """Headers announcing a JSON body of `size` bytes, with `key` as the bearer key if given."""
    found = {"Content-Type": "application/json", "Content-Length": str(size), **headers}
    if key:
        found["Authorization"] = f"Bearer {key}"
    return found


def fastest(ask: Callable[[], RawAnswer], times: int = 3) -> RawAnswer:
    """The quickest of `times` identical requests (each must answer the same status), so one
    slow moment of a busy machine does not decide a timing."""
    answers = [ask() for _ in range(times)]
    assert len({a.status for a in answers}) == 1, [a.status for a in answers]
    return min(answers, key=lambda a: a.seconds)


# -- authentication before the body -------------------------------------------------------------
@pytest.mark.parametrize(("key", "message"), [("", MISSING), ("tk_wrong", INVALID)])
def test_a_promised_body_without_a_valid_key_is_refused_before_it_arrives(
        live_server: LiveServer, key: str, message: str) -> None:
    answer = fastest(lambda: raw_request(live_server.url, "POST", TRIGGER, promising(key=key),
                                         b"{"))
    assert answer.status == 401 and answer.json() == {"error": message}
    assert answer.seconds < 0.1, f"the 401 took {answer.seconds:.3f} s"


def test_every_route_that_reads_a_body_refuses_it_unread_without_a_key(
        live_server: LiveServer) -> None:
    for method, path in BODY_ROUTES:
        answer = raw_request(live_server.url, method, path, promising(), b"{")
        assert answer.status == 401, (method, path, answer.body)
        assert answer.json() == {"error": MISSING}, (method, path)


def test_a_body_over_the_limit_without_a_key_is_401_not_413(live_server: LiveServer) -> None:
    for key in ("", "tk_wrong"):
        answer = raw_request(live_server.url, "POST", TRIGGER, promising(LIMIT * 4, key), b"{")
        assert answer.status == 401, answer.body


def test_a_bad_callback_signature_is_refused_before_the_body_arrives(
        live_server: LiveServer) -> None:
    token = live_server.tether.tokens.create()
    answer = fastest(lambda: raw_request(
        live_server.url, "POST", f"/api/v1/waitpoints/tokens/{token.id}/callback/forged",
        promising(), b"{"))
    assert answer.status == 401 and "Invalid signature" in answer.json()["error"]
    assert answer.seconds < 0.1, f"the 401 took {answer.seconds:.3f} s"
    assert live_server.tether.tokens.retrieve(token.id).status == "WAITING"


def test_a_bad_upload_signature_is_refused_before_the_body_arrives(
        live_server: LiveServer) -> None:
    target = f"/api/v1/packet-uploads/big.json?expires={int(time.time()) + 60}&signature=forged"
    answer = raw_request(live_server.url, "PUT", target,
                         promising(content_type="application/octet-stream"), b"{")
    assert answer.status == 403 and "invalid upload signature" in answer.json()["error"]
    assert live_server.tether.storage.get_packet("big.json") is None


def test_a_dashboard_form_without_a_session_is_refused_before_the_body_arrives(
        live_server: LiveServer) -> None:
    for path in ("/queues/pause", "/runs/run_x/cancel", "/tokens/complete", "/failed/retry"):
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Content-Length": str(PROMISED), "Referer": f"{live_server.url}/queues"}
        answer = raw_request(live_server.url, "POST", path, headers, b"n")
        assert answer.status == 303, (path, answer.status, answer.body)
        assert answer.headers["location"] == "/login?next=/queues"


def all_routes(routes: list[Any]) -> Iterator[Any]:
    """The app's routes, inside the routers it includes (newer FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from all_routes(inner.routes) if inner is not None else [route]


def test_every_route_is_behind_the_guard(tmp_path: Path) -> None:
    """The guard's table against the app's routes: under /api/ only the signed URLs and the
    open reads pass without a key; in the dashboard only page reads and the login and logout
    forms pass without a session; /metrics needs a key."""
    expected = {("POST", "/api/v1/waitpoints/tokens/{token_id}/callback/{signature}"):
                Access.CALLBACK, ("PUT", "/api/v1/packet-uploads/{path:path}"): Access.UPLOAD,
                ("GET", "/api/v1/timezones"): Access.OPEN, ("GET", "/api/docs"): Access.DOCS,
                ("HEAD", "/api/docs"): Access.DOCS, ("GET", "/openapi.json"): Access.DOCS,
                ("HEAD", "/openapi.json"): Access.DOCS, ("POST", "/login"): Access.OPEN_FORM,
                ("POST", "/logout"): Access.OPEN_FORM, ("GET", "/metrics"): Access.KEY}
    seen = set()
    tether = Tether(f"sqlite:///{tmp_path / 'routes.db'}")
    for route in all_routes(create_app(tether).routes):
        for method in getattr(route, "methods", None) or ():
            path = getattr(route, "path", "")
            default = Access.KEY if path.startswith("/api/") else \
                Access.OPEN if method in ("GET", "HEAD") else Access.SESSION
            want = expected.get((method, path), default)
            assert access_of(method, re.sub(r"\{[^}]+\}", "x1", path)) is want, (method, path)
            seen.add((method, path))
    assert set(expected) - {("HEAD", "/api/docs"), ("HEAD", "/openapi.json")} <= seen
    assert ("POST", "/queues/pause") in seen and ("PUT", "/api/v1/runs/{run_id}/metadata") in seen
    tether.close()


def test_open_routes_need_no_key(live_server: LiveServer) -> None:
    for path in ("/api/v1/timezones", "/login"):
        answer = raw_request(live_server.url, "GET", path, {})
        assert answer.status == 200, (path, answer.body)


def test_the_apis_description_needs_a_key_or_a_session(live_server: LiveServer) -> None:
    """Under `tether serve`: the OpenAPI document and its page are for those who may use it."""
    document = raw_request(live_server.url, "GET", "/openapi.json", {})
    assert document.status == 401 and "needs a key" in document.json()["error"]
    page = raw_request(live_server.url, "GET", "/api/docs", {})
    assert page.status == 303
    for path in ("/openapi.json", "/api/docs"):
        answer = raw_request(live_server.url, "GET", path,
                             {"Authorization": f"Bearer {live_server.key}"})
        assert answer.status == 200, (path, answer.body)


# -- the size limit -------------------------------------------------------------------------------
def test_a_declared_body_over_the_limit_is_413_before_it_arrives(live_server: LiveServer) -> None:
    answer = raw_request(live_server.url, "POST", TRIGGER,
                         promising(LIMIT + 1, live_server.key), b"{")
    assert answer.status == 413
    assert answer.json()["error"].startswith(
        f"request body of {LIMIT + 1} bytes is over the limit of {LIMIT} bytes")


def test_a_chunked_body_is_cut_off_with_413_once_it_passes_the_limit(
        live_server: LiveServer) -> None:
    """1 MiB chunks without a Content-Length: the answer comes while the body still streams."""
    chunk = b"x" * (1024 * 1024)
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
               "Authorization": f"Bearer {live_server.key}"}
    with connect(live_server.url) as sock:
        started = time.perf_counter()
        sock.sendall(raw_head(live_server.url, "POST", TRIGGER, headers) + b'5\r\n{"a":\r\n')
        sent, answered = 5, False
        while sent < 2 * LIMIT and not answered:
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            answered = bool(select.select([sock], [], [], 0)[0])
        if not answered:  # the last bytes in flight reach the server
            answered = bool(select.select([sock], [], [], 2)[0])
        if not answered:
            sock.sendall(b"0\r\n\r\n")
        answer = read_answer(sock, started)
    assert answered, f"no answer while the body streamed ({sent} bytes sent); then {answer}"
    assert answer.status == 413
    assert answer.json()["error"].startswith("request body of at least ")
    assert f"over the limit of {LIMIT} bytes" in answer.json()["error"]


def test_the_limit_is_configurable_and_counts_to_the_byte(limited_server: LiveServer) -> None:
    url, key = limited_server.url, limited_server.key
    fits = json.dumps({"payload": "x" * 970}).encode().ljust(1000)
    assert len(fits) == 1000
    headers = promising(len(fits), key)
    assert raw_request(url, "POST", TRIGGER, headers, fits).status == 404  # read: no such task
    over = raw_request(url, "POST", TRIGGER, promising(1001, key), fits)
    assert over.status == 413
    assert over.json()["error"].startswith("request body of 1001 bytes is over the limit of 1000")

    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
               "Authorization": f"Bearer {key}"}

    def in_chunks(body: bytes) -> bytes:
        return b"".join(b"%x\r\n%b\r\n" % (len(part), part)
                        for part in (body[:600], body[600:])) + b"0\r\n\r\n"

    assert raw_request(url, "POST", TRIGGER, chunked, in_chunks(fits)).status == 404
    answer = raw_request(url, "POST", TRIGGER, chunked, in_chunks(fits + b" "))
    assert answer.status == 413
    assert answer.json()["error"].startswith("request body of at least 1001 bytes is over the "
                                             "limit of 1000 bytes")


def test_a_login_form_is_small(live_server: LiveServer) -> None:
    """Anyone may post to /login, so its form may hold 64 KiB, whatever the limit."""
    answer = raw_request(live_server.url, "POST", "/login",
                         {"Content-Type": "application/x-www-form-urlencoded",
                          "Content-Length": str(64 * 1024 + 1)}, b"k")
    assert answer.status == 413


# -- a malformed Content-Length -------------------------------------------------------------------
def call_app(tether: Tether, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, Any]:
    """Call the ASGI app directly (uvicorn refuses most malformed headers itself)."""
    app = create_app(tether)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": TRIGGER, "raw_path": TRIGGER.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"testserver"), *headers],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80), "state": {}}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body_sent = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), json.loads(body_sent)


@pytest.mark.parametrize("lengths", [[b"12x"], [b"-2"], [b"2, 3"], [b""], [b"2", b"3"]])
def test_a_malformed_content_length_is_400(live_server: LiveServer,
                                           lengths: list[bytes]) -> None:
    auth = (b"authorization", f"Bearer {live_server.key}".encode())
    headers = [auth, (b"content-type", b"application/json"),
               *((b"content-length", value) for value in lengths)]
    status, body = call_app(live_server.tether, headers, b"{}")
    assert status == 400, body
    assert body["error"].startswith("malformed Content-Length")
    status, body = call_app(live_server.tether, headers[1:], b"{}")
    assert status == 401, "the key is checked first"


def test_under_tether_dev_the_apis_description_opens_from_this_machine(tmp_path: Path) -> None:
    import httpx

    from tether.server.app import ServerConfig

    tether = Tether(f"sqlite:///{tmp_path / 'dev.db'}")

    async def fetch(dev: bool, client: str) -> tuple[int, int]:
        app = create_app(tether, ServerConfig(dev=dev))
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            document = await http.get("/openapi.json")
            page = await http.get("/api/docs")
        return document.status_code, page.status_code

    try:
        assert asyncio.run(fetch(True, "127.0.0.1")) == (200, 200)
        assert asyncio.run(fetch(True, "10.0.0.9")) == (401, 303)  # not this machine
        assert asyncio.run(fetch(False, "127.0.0.1")) == (401, 303)
    finally:
        tether.close()
