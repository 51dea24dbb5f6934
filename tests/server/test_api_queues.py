"""Queues over real HTTP, on both backends: the list in offset pages, retrieving by id or name,
pausing and resuming; a paused queue's runs are not claimed until it is resumed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from test_api_waitpoints import eventually, running_worker

from tether import Queue, Retry, Tether
from tether.storage.queue_records import QueueRecord

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

QUEUES = "/api/v1/queues"


def mail_app(url: str) -> Tether:
    """`digest` runs in its own queue (type task); `send` and `notify` share "emails" (custom,
    at most 3 at once); `export` is in "team/exports"."""
    app = Tether(url)
    emails = Queue("emails", concurrency=3)

    @app.task(retry=Retry(max_attempts=1))
    def digest(payload: Any) -> str:
        return "digest"

    @app.task(queue=emails)
    def send(payload: Any) -> str:
        return "sent"

    @app.task(queue=emails)
    def notify(payload: Any) -> str:
        return "notified"

    @app.task(queue=Queue("team/exports"))
    def export(payload: Any) -> str:
        return "exported"

    return app


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The live server after a worker of `mail_app` registered its tasks and queues."""
    app = mail_app(live_server.tether.database_url)
    now = app.clock.now()
    tasks = list(app.tasks.values())
    app.storage.register_tasks([t.record(now) for t in tasks], [t.queue_record() for t in tasks])
    app.close()
    return live_server


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_list_answers_queue_items_by_name(server: LiveServer) -> None:
    server.tether.trigger("send", {})
    server.tether.trigger("notify", {}, delay="1h")
    with server.client() as client:
        listed = get(client, QUEUES)
    assert listed["pagination"] == {"currentPage": 1, "totalPages": 1, "count": 3}
    assert listed["data"] == [
        {"id": "queue_digest", "name": "digest", "type": "task", "running": 0, "queued": 0,
         "concurrencyLimit": None, "paused": False, "releaseConcurrencyOnWaitpoint": True},
        {"id": "queue_emails", "name": "emails", "type": "custom", "running": 0, "queued": 2,
         "concurrencyLimit": 3, "paused": False, "releaseConcurrencyOnWaitpoint": True},
        {"id": "queue_team/exports", "name": "team/exports", "type": "custom", "running": 0,
         "queued": 0, "concurrencyLimit": None, "paused": False,
         "releaseConcurrencyOnWaitpoint": True},
    ]


def test_list_is_offset_paged(live_server: LiveServer) -> None:
    with live_server.client() as client:
        empty = get(client, QUEUES)
    assert empty == {"data": [], "pagination": {"currentPage": 1, "totalPages": 0, "count": 0}}
    storage = live_server.tether.storage
    storage.ensure_queues([QueueRecord(f"q{i}", None) for i in range(5)], time.time())
    with live_server.client() as client:
        second = get(client, QUEUES, page=2, perPage=2)
        invalid = [client.get(QUEUES, params=p) for p in ({"perPage": 101}, {"page": 0})]
    assert [q["name"] for q in second["data"]] == ["q2", "q3"]
    assert second["pagination"] == {"currentPage": 2, "totalPages": 3, "count": 5}
    assert all(r.status_code == 422 and r.json()["error"] for r in invalid)


def test_retrieve_by_id_or_by_type_and_name(server: LiveServer) -> None:
    # the SDK encodes a name twice so that "/" survives: encodeURIComponent(name.replace("/", "%2F"))
    exports = quote(quote("team/exports", safe=""), safe="")
    with server.client() as client:
        by_id = get(client, f"{QUEUES}/queue_emails", type="id")
        by_bare_id = get(client, f"{QUEUES}/queue_emails")
        by_name = get(client, f"{QUEUES}/digest", type="task")
        by_custom_name = get(client, f"{QUEUES}/emails", type="custom")
        slashed = get(client, f"{QUEUES}/{exports}", type="custom")
        slashed_id = get(client, f"{QUEUES}/queue_{exports}", type="id")
        missing = client.get(f"{QUEUES}/queue_nope")
        bad_type = client.get(f"{QUEUES}/emails", params={"type": "other"})
    assert by_id == by_bare_id == by_custom_name and by_id["name"] == "emails"
    assert by_name["name"] == "digest" and by_name["type"] == "task"
    assert slashed == slashed_id and slashed["name"] == "team/exports"
    assert missing.status_code == 404 and "'nope'" in missing.json()["error"]
    assert bad_type.status_code == 422


def test_pause_and_resume(server: LiveServer) -> None:
    with server.client() as client:
        paused = client.post(f"{QUEUES}/queue_emails/pause", json={"type": "id", "action": "pause"})
        listed = get(client, QUEUES)["data"]
        resumed = client.post(f"{QUEUES}/emails/pause", json={"type": "custom", "action": "resume"})
        refused = [
            client.post(f"{QUEUES}/queue_nope/pause", json={"action": "pause"}),
            client.post(f"{QUEUES}/queue_emails/pause", json={"action": "stop"}),
            client.post(f"{QUEUES}/queue_emails/pause"),
        ]
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert [q["paused"] for q in listed] == [False, True, False]
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert [r.status_code for r in refused] == [404, 422, 422]
    assert all(r.json()["error"] for r in refused)


@pytest.mark.parametrize("key", ["", "tk_wrong"])
def test_every_queue_route_needs_a_valid_key(server: LiveServer, key: str) -> None:
    with server.client(key) as client:
        responses = [client.get(QUEUES), client.get(f"{QUEUES}/queue_emails"),
                     client.post(f"{QUEUES}/queue_emails/pause", json={"action": "pause"})]
    for response in responses:
        assert response.status_code == 401, response.text
        assert "API key" in response.json()["error"]
    assert not any(q.paused for q in server.tether.storage.list_queues())


def test_a_paused_queue_is_not_claimed_until_resumed(live_server: LiveServer) -> None:
    app = mail_app(live_server.tether.database_url)
    with running_worker(app), live_server.client() as client:
        eventually(lambda: get(client, QUEUES)["pagination"]["count"] == 3)  # worker started
        pause = client.post(f"{QUEUES}/queue_emails/pause", json={"action": "pause"})
        assert pause.status_code == 200, pause.text
        held = app.tasks["send"].trigger({})
        free = app.tasks["digest"].trigger({})
        assert free.result(timeout=20) == "digest"  # other queues go on
        time.sleep(1.5)  # more than a worker's poll interval
        assert held.status() == "QUEUED"
        assert get(client, f"{QUEUES}/queue_emails")["queued"] == 1
        resume = client.post(f"{QUEUES}/queue_emails/pause", json={"action": "resume"})
        assert resume.status_code == 200 and resume.json()["paused"] is False
        assert held.result(timeout=20) == "sent"
        assert get(client, f"{QUEUES}/queue_emails")["queued"] == 0
