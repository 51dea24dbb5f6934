"""Users' JSON over real HTTP, on both backends: what the API accepts reads back through every
route (run object, list, dashboard), what it cannot read back is refused at trigger time with 400,
what is over max_payload_size with 413, and neither stores anything. tether.Client turns those
answers into PayloadNotStorable and PayloadTooLarge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether import Client, Tether, Worker

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

DEPTH = 100  # Tether's documented MAX_JSON_DEPTH
LIMIT = 20_000  # the server's max_payload_size in these tests
TOKENS = "/api/v1/waitpoints/tokens"


def nested(depth: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def sized(size: int) -> str:
    """A string whose JSON is `size` bytes."""
    return "x" * (size - 2)


@pytest.fixture
def app(live_server: LiveServer) -> Iterator[Tether]:
    """A worker app with `echo` on the server's database; the server takes payloads of at most
    LIMIT bytes."""
    live_server.tether.max_payload_size = LIMIT
    app = Tether(live_server.tether.database_url)

    @app.task(id="echo")
    async def echo(payload: Any) -> Any:
        return payload

    now = app.clock.now()
    app.storage.register_tasks([t.record(now) for t in app.tasks.values()],
                               [t.queue_record() for t in app.tasks.values()])
    yield app
    app.close()


def post_json(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    """POST `body` as JSON with every non-ASCII character escaped: lone surrogates included,
    which httpx's own encoding (UTF-8) cannot send."""
    return client.post(path, content=json.dumps(body),
                       headers={"Content-Type": "application/json"})


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]
    return message


def run_count(server: LiveServer) -> int:
    return len(server.tether.runs.list(limit=1000))


# -- refused at trigger time ---------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "message"), [
    (nested(DEPTH + 1), "payload is nested 101 levels deep; Tether stores JSON nested at most "
                        "100 levels (arrays and objects)"),
    (nested(254), "payload is nested 254 levels deep"),  # was stored, then GET answered 500
    ({"note": "\ud800"}, "payload holds a lone surrogate '\\ud800'"),
    (["\udc00", "x"], "payload holds a lone surrogate '\\udc00'"),
])
def test_payloads_that_cannot_be_read_back_are_400_and_store_nothing(
        live_server: LiveServer, app: Tether, payload: Any, message: str) -> None:
    superjson = json.dumps({"json": payload})
    with live_server.client() as client:
        single = post_json(client, "/api/v1/tasks/echo/trigger", {"payload": payload})
        typed = post_json(client, "/api/v1/tasks/echo/trigger", {
            "payload": superjson, "options": {"payloadType": "application/super+json"}})
        v2 = post_json(client, "/api/v2/tasks/batch", {"items": [
            {"task": "echo", "payload": 1}, {"task": "echo", "payload": payload}]})
        batch = client.post("/api/v3/batches", json={"runCount": 1}).json()
        items = client.post(f"/api/v3/batches/{batch['id']}/items",
                            content=json.dumps({"index": 0, "task": "echo", "payload": payload}),
                            headers={"Content-Type": "application/x-ndjson"})
        metadata = post_json(client, "/api/v1/tasks/echo/trigger",
                             {"payload": 1, "options": {"metadata": {"m": payload}}})
    assert message in error_of(single, 400) and message in error_of(typed, 400)
    assert error_of(v2, 400).startswith(f"item 1: {message}")
    assert error_of(items, 400).startswith(f"item 0: {message}")
    assert error_of(metadata, 400).startswith("metadata ")
    assert run_count(live_server) == 0


def test_a_body_too_deep_to_parse_is_a_clear_400(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        deep = client.post("/api/v1/tasks/echo/trigger", content='{"payload": ' + "[" * 5000
                           + "]" * 5000 + "}", headers={"Content-Type": "application/json"})
        digits = client.post("/api/v1/tasks/echo/trigger", content='{"payload": ' + "9" * 5000
                             + "}", headers={"Content-Type": "application/json"})
    assert "nested too deep to parse" in error_of(deep, 400)
    assert "4300 digits" in error_of(digits, 400)
    assert run_count(live_server) == 0


def test_payloads_over_the_limit_are_413_with_their_size(live_server: LiveServer,
                                                          app: Tether) -> None:
    over = sized(LIMIT + 1)
    expected = "payload of 20,001 bytes is over the limit of 20,000 bytes (max_payload_size)"
    with live_server.client() as client:
        at_limit = client.post("/api/v1/tasks/echo/trigger", json={"payload": sized(LIMIT)})
        single = client.post("/api/v1/tasks/echo/trigger", json={"payload": over})
        text = client.post("/api/v1/tasks/echo/trigger",
                           json={"payload": "y" * (LIMIT - 1),
                                 "options": {"payloadType": "text/plain"}})
        v2 = client.post("/api/v2/tasks/batch", json={"items": [{"task": "echo", "payload": over}]})
        metadata = client.post("/api/v1/tasks/echo/trigger",
                               json={"payload": 1, "options": {"metadata": {"m": over}}})
    assert at_limit.status_code == 200, at_limit.text
    assert error_of(single, 413) == expected
    assert error_of(text, 413) == expected
    assert error_of(v2, 413) == f"item 0: {expected}"
    assert error_of(metadata, 413).startswith("metadata of 20,0")
    assert run_count(live_server) == 1


def test_packets_over_the_limit_are_413(live_server: LiveServer, app: Tether) -> None:
    packet = json.dumps({"json": sized(LIMIT)}).encode()
    with live_server.client() as client:
        url = client.put("/api/v2/packets/big/payload.json").json()["presignedUrl"]
    with httpx.Client(timeout=10) as anonymous:
        refused = anonymous.put(url, content=packet)
        streamed = anonymous.put(url, content=iter([b'{"json": "', b"x" * LIMIT, b'"}']))
    assert error_of(refused, 413) == (f"payload packet of {len(packet):,} bytes is over the "
                                      "limit of 20,000 bytes (max_payload_size)")
    assert error_of(streamed, 413) == ("payload packet is over the limit of 20,000 bytes "
                                       "(max_payload_size)")
    assert live_server.tether.storage.get_packet("big/payload.json") is None


def test_metadata_and_token_data_are_held_to_the_payload_rules(live_server: LiveServer,
                                                               app: Tether) -> None:
    with live_server.client() as client:
        run_id = client.post("/api/v1/tasks/echo/trigger", json={"payload": 1}).json()["id"]
        big = client.put(f"/api/v1/runs/{run_id}/metadata", json={"metadata": {"m": sized(LIMIT)}})
        deep = client.put(f"/api/v1/runs/{run_id}/metadata",
                          json={"metadata": {"m": nested(DEPTH)}})
        token = client.post(TOKENS, json={}).json()
        data = client.post(f"{TOKENS}/{token['id']}/complete", json={"data": sized(LIMIT + 1)})
        lone = post_json(client, f"{TOKENS}/{token['id']}/complete", {"data": "\ud800"})
        with httpx.Client(timeout=10) as anonymous:
            callback = anonymous.post(token["url"], json=nested(DEPTH + 1))
        waiting = client.get(f"{TOKENS}/{token['id']}").json()
    assert error_of(big, 413).startswith("metadata of 20,0")
    assert "metadata is nested 101 levels deep" in error_of(deep, 400)
    assert error_of(data, 413) == ("token data of 20,001 bytes is over the limit of 20,000 bytes "
                                   "(max_payload_size)")
    assert "token data holds a lone surrogate" in error_of(lone, 400)
    assert "token data is nested 101 levels deep" in error_of(callback, 400)
    assert waiting["status"] == "WAITING"
    assert live_server.tether.runs.retrieve(run_id).metadata == {}


# -- read back through every route ----------------------------------------------------------------
EDGES = [nested(DEPTH), sized(LIMIT), {"s": "\x00 \u2028 \U0001F600 é <b>&amp;"},
         [2**53 + 1, -(10**40), 1e308, -0.0], {"[\"]}\\": ["\\", "\"", "]]"], "a\x00": None}]
WITH_METADATA = 2  # the values from here on are also sent as metadata


def test_what_is_accepted_reads_back_equal_everywhere(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        ids = []
        for index, value in enumerate(EDGES):
            options = {"metadata": {"v": value}} if index >= WITH_METADATA else {}
            created = client.post("/api/v1/tasks/echo/trigger",
                                  json={"payload": value, "options": options})
            assert created.status_code == 200, created.text
            ids.append(created.json()["id"])
        asyncio.run(Worker(app).run_until_idle())
        listed = client.get("/api/v1/runs", params={"page[size]": 100})
        assert listed.status_code == 200, listed.text
        for index, (run_id, value) in enumerate(zip(ids, EDGES, strict=True)):
            found = client.get(f"/api/v3/runs/{run_id}")
            assert found.status_code == 200, found.text
            body = found.json()
            assert (body["status"], body["payload"], body["output"]) == ("COMPLETED", value, value)
            assert client.get(f"/runs/{run_id}").status_code == 200
            assert app.runs.retrieve(run_id).output == value
            if index >= WITH_METADATA:
                assert body["metadata"] == {"v": value}


# -- tether.Client --------------------------------------------------------------------------------
def test_the_client_refuses_before_sending_and_reports_413(live_server: LiveServer,
                                                           app: Tether) -> None:
    from tether import PayloadNotStorable, PayloadTooLarge

    with Client(live_server.url, live_server.key, retries=0) as client:
        with pytest.raises(PayloadNotStorable, match="payload is nested 101 levels deep"):
            client.trigger("echo", nested(DEPTH + 1))
        with pytest.raises(PayloadNotStorable, match="metadata holds a lone surrogate"):
            client.trigger("echo", 1, metadata={"m": "\udfff"})
        with pytest.raises(PayloadTooLarge, match=r"payload of 20,001 bytes is over the limit"):
            client.trigger("echo", sized(LIMIT + 1))
        with pytest.raises(PayloadTooLarge, match=r"item 0: payload of 20,001 bytes"):
            client.batch_trigger("echo", [sized(LIMIT + 1)])
        assert client.trigger("echo", nested(DEPTH)).retrieve().payload == nested(DEPTH)
