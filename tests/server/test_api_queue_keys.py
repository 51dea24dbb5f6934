"""Flow control over real HTTP, on both backends: a trigger past a queue's max_queued is a 429
with the clear text and stores nothing (single, v2 batch all-or-nothing, tether.Client);
cancel_in_progress on an HTTP trigger; paused keys listed, paused and resumed; keys by depth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether import Client, Queue, QueueFull, RunStatus, Tether

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py


def flow_app(url: str) -> Tether:
    app = Tether(url)

    @app.task(queue=Queue("mail", max_queued=2))
    def send(payload: Any) -> None: ...

    @app.task(queue=Queue("builds", concurrency=1, on_key_limit="cancel_in_progress"))
    def build(payload: Any) -> None: ...

    return app


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The live server after a worker of `flow_app` registered its tasks and queues (the
    server has none of their code)."""
    app = flow_app(live_server.tether.database_url)
    now = app.clock.now()
    tasks = list(app.tasks.values())
    app.storage.register_tasks([t.record(now) for t in tasks], [t.queue_record() for t in tasks])
    app.close()
    return live_server


def trigger(client: httpx.Client, task: str, payload: Any = None,
            **options: Any) -> httpx.Response:
    return client.post(f"/api/v1/tasks/{task}/trigger",
                       json={"payload": payload, "options": options})


def test_a_trigger_past_max_queued_is_a_429_that_stores_nothing(server: LiveServer) -> None:
    with server.client() as client:
        assert trigger(client, "send", 1).status_code == 200
        assert trigger(client, "send", 2, tags=["two"]).status_code == 200
        refused = trigger(client, "send", 3, tags=["three"])
        assert refused.status_code == 429
        assert refused.json() == {"error": "queue 'mail' is full: 2 runs are waiting to start and "
                                           "its max_queued is 2; nothing was stored"}
        batch = client.post("/api/v2/tasks/batch", json={"items": [
            {"task": "build", "payload": 1}, {"task": "send", "payload": 4}]})
        assert batch.status_code == 429, batch.text
        assert "queue 'mail' is full" in batch.json()["error"]
    assert server.tether.runs.list(tag="three") == []
    assert len(server.tether.runs.list(task="send")) == 2
    assert server.tether.runs.list(task="build") == []  # the whole batch was refused


def test_the_client_raises_queue_full_with_the_servers_words(server: LiveServer) -> None:
    with Client(server.url, server.key, retries=0) as api:
        api.trigger("send", 1)
        api.trigger("send", 2)
        with pytest.raises(QueueFull, match="queue 'mail' is full: 2 runs are waiting"):
            api.trigger("send", 3)
    assert len(server.tether.runs.list(task="send")) == 2


def test_an_http_trigger_replaces_the_keys_older_run(server: LiveServer) -> None:
    with server.client() as client:
        first = trigger(client, "build", 1, concurrencyKey="main").json()["id"]
        second = trigger(client, "build", 2, concurrencyKey="main").json()["id"]
    assert server.tether.runs.retrieve(first).status == RunStatus.CANCELED
    assert server.tether.runs.retrieve(second).status == RunStatus.QUEUED


def test_paused_keys_over_http(server: LiveServer) -> None:
    server.tether.trigger("build", 1, concurrency_key="main")
    with server.client() as client:
        assert client.get("/api/v1/paused-keys").json() == {"data": []}
        paused = client.post("/api/v1/queues/builds/paused-keys",
                             json={"key": "main", "seconds": 600, "reason": "429 from GitHub"})
        assert paused.status_code == 200, paused.text
        body = paused.json()
        assert (body["queue"], body["key"], body["reason"]) == ("builds", "main",
                                                                "429 from GitHub")
        assert body["until"].endswith("Z")
        by_hand = client.post("/api/v1/queues/queue_builds/paused-keys",
                              json={"key": "", "until": "2099-01-01T00:00:00Z"})
        assert by_hand.json()["until"] == "2099-01-01T00:00:00.000Z"
        listed = client.get("/api/v1/queues/builds/paused-keys").json()["data"]
        assert [p["key"] for p in listed] == ["", "main"]
        assert client.get("/api/v1/paused-keys", params={"queue": "mail"}).json() == {"data": []}
        assert [p.key for p in server.tether.queues.paused_keys("builds")] == ["", "main"]

        resumed = client.post("/api/v1/queues/builds/resume-key", json={"key": "main"})
        assert resumed.json() == {"resumed": True}
        again = client.post("/api/v1/queues/builds/resume-key", json={"key": "main"})
        assert again.json() == {"resumed": False}
        assert [p["key"] for p in client.get("/api/v1/paused-keys").json()["data"]] == [""]

        both = client.post("/api/v1/queues/builds/paused-keys",
                           json={"key": "x", "seconds": 5, "until": "2099-01-01T00:00:00Z"})
        assert both.status_code == 422
        assert both.json() == {"error": "give either until (an ISO-8601 time) or seconds"}
        naive = client.post("/api/v1/queues/builds/paused-keys",
                            json={"key": "x", "until": "2099-01-01T00:00:00"})
        assert naive.status_code == 422 and "timezone-aware" in naive.json()["error"]
        unknown = client.post("/api/v1/queues/nope/paused-keys", json={"key": "x", "seconds": 5})
        assert unknown.status_code == 404
        assert unknown.json()["error"].startswith("no queue named 'nope'")


def test_keys_by_depth_over_http(server: LiveServer) -> None:
    for key in ("b", "a"):
        server.tether.trigger("send", 0, concurrency_key=key)
    with server.client() as client:
        keys = client.get("/api/v1/queues/mail/keys", params={"limit": 5}).json()
        unauthenticated = httpx.get(server.url + "/api/v1/paused-keys", timeout=10)
    assert keys == {"data": [{"key": "a", "queued": 1, "executing": 0},
                             {"key": "b", "queued": 1, "executing": 0}]}
    assert unauthenticated.status_code == 401
