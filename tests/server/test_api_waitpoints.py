"""Waitpoint tokens over real HTTP, on both backends: create, complete, retrieve, list, the signed
callback URL, and a run parked on a token that the API completes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether import Context, Retry, Tether, Worker

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

TOKENS = "/api/v1/waitpoints/tokens"


@contextmanager
def running_worker(app: Tether) -> Iterator[Worker]:
    """A worker serving `app` on an event loop in a thread, stopped (and checked) on exit."""
    worker = Worker(app, concurrency=2, shutdown_grace=5)
    loop = asyncio.new_event_loop()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(worker.run())
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    thread = threading.Thread(target=run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(20)
        loop.close()
        app.close()
        assert not thread.is_alive(), "the worker did not stop"
        assert not failures, failures


def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(TOKENS, json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def retrieve(client: httpx.Client, token_id: str) -> dict[str, Any]:
    response = client.get(f"{TOKENS}/{token_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


# -- create and retrieve --------------------------------------------------------------------------
def test_create_answers_id_cached_flag_and_a_signed_callback_url(live_server: LiveServer) -> None:
    with live_server.client() as client:
        created = create(client)
        assert set(created) == {"id", "isCached", "url"}
        assert created["id"].startswith("waitpoint_") and created["isCached"] is False
        prefix = f"{live_server.url}{TOKENS}/{created['id']}/callback/"
        assert created["url"].startswith(prefix) and len(created["url"]) > len(prefix) + 20

        token = retrieve(client, created["id"])
    assert token["status"] == "WAITING" and token["url"] == created["url"]
    assert token["tags"] == [] and token["createdAt"].endswith("Z")
    for absent in ("completedAt", "timeoutAt", "idempotencyKey", "output", "outputType"):
        assert absent not in token  # optional fields are left out, never null


def test_idempotency_key_returns_the_same_token_as_cached(live_server: LiveServer) -> None:
    with live_server.client() as client:
        first = create(client, idempotencyKey="approve-42", idempotencyKeyTTL="1h")
        again = create(client, idempotencyKey="approve-42")
        other = create(client, idempotencyKey="approve-43")
        token = retrieve(client, first["id"])
    assert again == {**first, "isCached": True}
    assert other["id"] != first["id"] and other["isCached"] is False
    assert token["idempotencyKey"] == "approve-42"


def test_an_idempotency_key_ttl_ends_and_a_new_token_is_made(live_server: LiveServer) -> None:
    with live_server.client() as client:
        first = create(client, idempotencyKey="approve-7", idempotencyKeyTTL="300ms")
        again = create(client, idempotencyKey="approve-7")
        time.sleep(0.35)
        fresh = create(client, idempotencyKey="approve-7", idempotencyKeyTTL="1h")
        cached = create(client, idempotencyKey="approve-7")
        listed = client.get(TOKENS, params={"filter[idempotencyKey]": "approve-7"}).json()
    assert again == {**first, "isCached": True}
    assert fresh["id"] != first["id"] and fresh["isCached"] is False
    assert cached == {**fresh, "isCached": True}
    assert [t["id"] for t in listed["data"]] == [fresh["id"], first["id"]]  # both made with it


def test_a_retried_request_gets_the_first_answer(live_server: LiveServer) -> None:
    retry = {"x-trigger-request-idempotency-key": "3f1c6a9e-retry"}
    with live_server.client() as client:
        first = client.post(TOKENS, json={}, headers=retry)
        again = client.post(TOKENS, json={}, headers=retry)
        other = client.post(TOKENS, json={})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and other.json()["id"] != first.json()["id"]
    assert len(live_server.tether.tokens.list()) == 2


def test_timeout_as_a_duration_or_a_date_and_tags(live_server: LiveServer) -> None:
    at = datetime.now(UTC) + timedelta(days=2)
    with live_server.client() as client:
        by_duration = retrieve(client, create(client, timeout="1h", tags="one")["id"])
        by_date = retrieve(client, create(client, timeout=at.isoformat(),
                                          tags=["b", "a", "b"])["id"])
    due = datetime.fromisoformat(by_duration["timeoutAt"])
    assert timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)
    assert by_duration["tags"] == ["one"]
    assert abs(datetime.fromisoformat(by_date["timeoutAt"]) - at) < timedelta(milliseconds=2)
    assert by_date["tags"] == ["a", "b"]


@pytest.mark.parametrize("body", [
    {"timeout": "soon"}, {"timeout": "2030-01-01T00:00:00"}, {"timeout": "99999999d"},
    {"idempotencyKeyTTL": "forever"}, {"tags": [f"t{i}" for i in range(11)]},
    {"tags": ["x" * 129]}, {"tags": [""]}, {"idempotencyKey": ""}, {"timeout": 5},
])
def test_invalid_create_is_422_and_stores_nothing(live_server: LiveServer,
                                                  body: dict[str, Any]) -> None:
    with live_server.client() as client:
        response = client.post(TOKENS, json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert live_server.tether.tokens.list() == []


# -- complete -------------------------------------------------------------------------------------
def test_complete_sets_the_output_once(live_server: LiveServer) -> None:
    with live_server.client() as client:
        token_id = create(client)["id"]
        first = client.post(f"{TOKENS}/{token_id}/complete", json={"data": {"ok": [1, "two"]}})
        again = client.post(f"{TOKENS}/{token_id}/complete", json={"data": "other"})
        token = retrieve(client, token_id)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"success": True}
    assert token["status"] == "COMPLETED" and token["completedAt"].endswith("Z")
    # as the SDK's wait.retrieveToken expects: the data as JSON text, with its type
    assert token["output"] == '{"ok":[1,"two"]}' and token["outputType"] == "application/json"


def test_complete_without_a_body_completes_with_null(live_server: LiveServer) -> None:
    with live_server.client() as client:
        token_id = create(client)["id"]
        response = client.post(f"{TOKENS}/{token_id}/complete")
        token = retrieve(client, token_id)
    assert response.status_code == 200, response.text
    assert token["status"] == "COMPLETED" and token["output"] == "null"


def test_a_timed_out_token_cannot_be_completed(live_server: LiveServer) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with live_server.client() as client:
        token_id = create(client, timeout=past)["id"]
        response = client.post(f"{TOKENS}/{token_id}/complete", json={"data": 1})
        token = retrieve(client, token_id)
    assert response.status_code == 400
    assert "timed out" in response.json()["error"]
    assert token["status"] == "TIMED_OUT" and "timeoutAt" in token
    assert "completedAt" not in token and "output" not in token


def test_unknown_tokens_are_404(live_server: LiveServer) -> None:
    from tether.server import signing

    url = f"{TOKENS}/waitpoint_missing"
    signature = signing.sign(live_server.tether, "token", "waitpoint_missing")
    with live_server.client() as client:
        responses = [client.get(url), client.post(f"{url}/complete", json={}),
                     client.post(f"{url}/callback/{signature}", json={})]
    for response in responses:
        assert response.status_code == 404, response.text
        assert "waitpoint_missing" in response.json()["error"]


# -- the callback URL -----------------------------------------------------------------------------
def test_callback_completes_with_the_posted_json_and_needs_no_key(live_server: LiveServer) -> None:
    with live_server.client() as client:
        created = create(client)
    with httpx.Client(timeout=10) as anonymous:
        response = anonymous.post(created["url"], json={"approved": True, "by": "ann"})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    token = live_server.tether.tokens.retrieve(created["id"])
    assert token.status == "COMPLETED" and token.output == {"approved": True, "by": "ann"}


@pytest.mark.parametrize("mangle", [
    lambda url: url[:-1] + ("A" if url[-1] != "A" else "B"),
    lambda url: url.rsplit("/", 1)[0] + "/nope",
    lambda url: url.replace("/callback/", "/callback/x"),
])
def test_callback_with_a_wrong_signature_is_401_and_changes_nothing(
        live_server: LiveServer, mangle: Any) -> None:
    with live_server.client() as client:
        created = create(client)
    response = httpx.post(mangle(created["url"]), json={"approved": True}, timeout=10)
    assert response.status_code == 401
    assert "signature" in response.json()["error"].lower()
    assert live_server.tether.tokens.retrieve(created["id"]).status == "WAITING"


def test_a_signature_is_only_good_for_its_own_token(live_server: LiveServer) -> None:
    with live_server.client() as client:
        first, second = create(client), create(client)
    stolen = first["url"].replace(first["id"], second["id"])
    assert httpx.post(stolen, json=1, timeout=10).status_code == 401
    assert live_server.tether.tokens.retrieve(second["id"]).status == "WAITING"


# -- list -----------------------------------------------------------------------------------------
def test_list_pages_newest_first(live_server: LiveServer) -> None:
    with live_server.client() as client:
        ids = [create(client)["id"] for _ in range(5)]
        seen: list[str] = []
        params: dict[str, Any] = {"page[size]": 2}
        pages = 0
        while True:
            body = client.get(TOKENS, params=params).json()
            pages += 1
            assert ("previous" in body["pagination"]) == (pages > 1)
            seen += [t["id"] for t in body["data"]]
            if "next" not in body["pagination"]:
                break
            params["page[after]"] = body["pagination"]["next"]
        default = client.get(TOKENS).json()
    assert seen == ids[::-1] and pages == 3
    assert [t["id"] for t in default["data"]] == ids[::-1] and default["pagination"] == {}
    assert all("output" not in t for t in default["data"])


def test_list_pages_go_back_as_runs_do(live_server: LiveServer) -> None:
    """`pagination.previous` leads back with `page[before]`; the SDK's `getPreviousPage()` after
    `getNextPage()` sends both cursors, and `before` wins."""
    with live_server.client() as client:
        newest_first = [create(client, tags=["x"])["id"] for _ in range(7)][::-1]
        create(client, tags=["other"])  # filtered out below

        def page(**cursor: str) -> dict[str, Any]:
            params = {"page[size]": 3, "filter[tags]": "x",
                      **{f"page[{k}]": v for k, v in cursor.items()}}
            response = client.get(TOKENS, params=params)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        def ids(body: dict[str, Any]) -> list[str]:
            return [t["id"] for t in body["data"]]

        first = page()
        second = page(after=first["pagination"]["next"])
        third = page(after=second["pagination"]["next"])
        back = page(before=third["pagination"]["previous"])
        top = page(before=back["pagination"]["previous"])
        both = page(after=second["pagination"]["next"], before=second["pagination"]["previous"])
    assert ids(first) == newest_first[:3] and first["pagination"] == {"next": newest_first[2]}
    assert ids(second) == newest_first[3:6]
    assert second["pagination"] == {"next": newest_first[5], "previous": newest_first[3]}
    assert ids(third) == newest_first[6:] and third["pagination"] == {"previous": newest_first[6]}
    assert ids(back) == ids(second) and back["pagination"] == second["pagination"]
    assert ids(top) == ids(first) and top["pagination"] == first["pagination"]
    assert ids(both) == ids(first) and both["pagination"] == first["pagination"]


def test_list_filters(live_server: LiveServer) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with live_server.client() as client:
        waiting = create(client, tags=["red"])["id"]
        done = create(client, tags=["blue"], idempotencyKey="k1")["id"]
        client.post(f"{TOKENS}/{done}/complete", json={"data": 1})
        timed_out = create(client, timeout=past)["id"]  # stored WAITING: reported TIMED_OUT

        def ids(**params: Any) -> list[str]:
            response = client.get(TOKENS, params=params)
            assert response.status_code == 200, response.text
            return [t["id"] for t in response.json()["data"]]

        assert ids(**{"filter[status]": "WAITING"}) == [waiting]
        assert ids(**{"filter[status]": "TIMED_OUT"}) == [timed_out]
        assert ids(**{"filter[status]": "COMPLETED,TIMED_OUT"}) == [timed_out, done]
        assert ids(**{"filter[tags]": "blue,green"}) == [done]
        assert ids(**{"filter[idempotencyKey]": "k1"}) == [done]
        assert ids(**{"filter[createdAt][period]": "1h"}) == [timed_out, done, waiting]
        assert ids(**{"filter[createdAt][to]": 1000}) == []


@pytest.mark.parametrize("params", [
    {"filter[status]": "DONE"}, {"page[size]": 0}, {"page[size]": 101},
    {"filter[createdAt][period]": "lately"},
])
def test_invalid_list_queries_are_422(live_server: LiveServer, params: dict[str, Any]) -> None:
    with live_server.client() as client:
        response = client.get(TOKENS, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]


# -- authentication -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "tk_wrong"])
def test_every_token_route_needs_a_valid_key(live_server: LiveServer, key: str) -> None:
    token = live_server.tether.tokens.create()
    with live_server.client(key) as client:
        responses = [
            client.post(TOKENS, json={"idempotencyKey": "x"}),
            client.get(TOKENS),
            client.get(f"{TOKENS}/{token.id}"),
            client.post(f"{TOKENS}/{token.id}/complete", json={"data": 1}),
        ]
    for response in responses:
        assert response.status_code == 401, response.text
        assert "API key" in response.json()["error"]
    assert [t.id for t in live_server.tether.tokens.list()] == [token.id]
    assert live_server.tether.tokens.retrieve(token.id).status == "WAITING"


# -- a run waiting for a token --------------------------------------------------------------------
def approvals_app(url: str) -> Tether:
    app = Tether(url)

    @app.task(retry=Retry(max_attempts=1))
    async def approval(payload: Any, ctx: Context) -> Any:
        token = await ctx.create_token(tags=["approval"])
        data = await ctx.wait_for_token(token)
        return {"data": data}

    return app


def test_completing_over_http_resumes_the_waiting_run(live_server: LiveServer) -> None:
    app = approvals_app(live_server.tether.database_url)
    with running_worker(app), live_server.client() as client:
        handle = app.tasks["approval"].trigger({})

        def waiting_token() -> Any:
            data = client.get(TOKENS, params={"filter[status]": "WAITING"}).json()["data"]
            return data[0] if data else None

        token = eventually(waiting_token)
        assert token["tags"] == ["approval"]
        eventually(lambda: handle.status() == "WAITING")
        with httpx.Client(timeout=10) as anonymous:
            assert anonymous.post(token["url"], json={"approved": True}).status_code == 200
        assert handle.result(timeout=20) == {"data": {"approved": True}}
