"""Schedules over real HTTP, on both backends: create (idempotent by deduplication key), list in
offset pages, retrieve, update, delete, activate, deactivate; schedules declared in code are
read-only here; the timezone list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether.cron import cron_spec
from tether.schedules import declared_key, new_record
from tether.storage.queue_records import QueueRecord

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

SCHEDULES = "/api/v1/schedules"


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The live server with two tasks registered, as a worker would register them."""
    tether = live_server.tether

    @tether.task
    def report(payload: Any) -> None: ...

    @tether.task
    def cleanup(payload: Any) -> None: ...

    now = tether.clock.now()
    tether.storage.register_tasks([report.record(now), cleanup.record(now)],
                                  [QueueRecord("report", None), QueueRecord("cleanup", None)])
    return live_server


def declared(live_server: LiveServer, task_id: str = "report") -> str:
    """A schedule declared in code (`@app.task(cron=...)`), stored as a worker stores it."""
    tether = live_server.tether
    record = new_record(task_id, cron_spec("0 * * * *", where="test"), tether.clock.now(),
                        deduplication_key=declared_key(task_id), declared=True)
    stored, _ = tether.storage.save_schedule(record)
    return stored.id


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(SCHEDULES, json={"task": "report", "cron": "0 9 * * 1-5",
                                            "deduplicationKey": "weekday-report", **body})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_answers_the_schedule_object(server: LiveServer) -> None:
    with server.client() as client:
        schedule = create(client, timezone="Europe/London", externalId="user-1")
    next_run = schedule.pop("nextRun")
    assert schedule.pop("id").startswith("sched_")
    assert schedule == {
        "type": "IMPERATIVE", "task": "report", "active": True,
        "deduplicationKey": "weekday-report", "externalId": "user-1",
        "generator": {"type": "CRON", "expression": "0 9 * * 1-5",
                      "description": "At 09:00 on Monday through Friday"},
        "timezone": "Europe/London", "environments": []}
    assert next_run.endswith("Z") and datetime.fromisoformat(next_run) > datetime.now(UTC)


def test_optional_fields_are_left_out_and_timezone_defaults_to_utc(server: LiveServer) -> None:
    with server.client() as client:
        schedule = create(client, externalId=None)
    assert "externalId" not in schedule and schedule["timezone"] == "UTC"


def test_the_same_deduplication_key_updates_the_schedule(server: LiveServer) -> None:
    with server.client() as client:
        first = create(client)
        second = create(client, cron="30 6 * * *", task="cleanup")
        listed = client.get(SCHEDULES).json()
    assert second["id"] == first["id"]
    assert second["task"] == "cleanup" and second["generator"]["expression"] == "30 6 * * *"
    assert listed["pagination"]["count"] == 1


@pytest.mark.parametrize(("body", "status"), [
    ({"cron": "61 * * * *"}, 422), ({"cron": "* * *"}, 422), ({"timezone": "Mars/Olympus"}, 422),
    ({"deduplicationKey": None}, 422), ({"task": ""}, 422), ({"cron": "0 \x00 * * *"}, 422),
    ({"task": "nope"}, 404),
])
def test_invalid_create_is_refused_and_stores_nothing(server: LiveServer, body: dict[str, Any],
                                                      status: int) -> None:
    payload = {"task": "report", "cron": "0 9 * * *", "deduplicationKey": "k", **body}
    with server.client() as client:
        response = client.post(SCHEDULES, json={k: v for k, v in payload.items() if v is not None})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert server.tether.schedules.list() == []


def test_list_is_offset_paged_newest_first(server: LiveServer) -> None:
    with server.client() as client:
        ids = [create(client, deduplicationKey=f"k{i}")["id"] for i in range(3)]
        first = client.get(SCHEDULES, params={"perPage": 2}).json()
        second = client.get(SCHEDULES, params={"perPage": 2, "page": 2}).json()
        beyond = client.get(SCHEDULES, params={"perPage": 2, "page": 3}).json()
        default = client.get(SCHEDULES).json()
        invalid = [client.get(SCHEDULES, params=p) for p in
                   ({"perPage": 0}, {"perPage": 101}, {"page": 0}, {"page": "x"})]
    assert [s["id"] for s in first["data"] + second["data"]] == ids[::-1]
    assert first["pagination"] == {"currentPage": 1, "totalPages": 2, "count": 3}
    assert second["pagination"] == {"currentPage": 2, "totalPages": 2, "count": 3}
    assert beyond["data"] == [] and beyond["pagination"]["currentPage"] == 3
    assert len(default["data"]) == 3
    assert all(r.status_code == 422 and r.json()["error"] for r in invalid)


def test_retrieve_and_404(server: LiveServer) -> None:
    with server.client() as client:
        created = create(client)
        found = client.get(f"{SCHEDULES}/{created['id']}")
        missing = client.get(f"{SCHEDULES}/sched_missing")
    assert found.status_code == 200 and found.json() == created
    assert missing.status_code == 404 and "sched_missing" in missing.json()["error"]


def test_update_replaces_the_definition_in_place(server: LiveServer) -> None:
    with server.client() as client:
        created = create(client, externalId="user-1")
        response = client.put(f"{SCHEDULES}/{created['id']}",
                              # 09:30 UTC: never the created schedule's next slot (09:00 UTC)
                              json={"task": "report", "cron": "30 18 * * *",
                                    "timezone": "Asia/Tokyo"})
        missing = client.put(f"{SCHEDULES}/sched_missing", json={"task": "report", "cron": "* * * * *"})
        invalid = client.put(f"{SCHEDULES}/{created['id']}", json={"task": "report", "cron": "x"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["id"] == created["id"] and updated["deduplicationKey"] == "weekday-report"
    assert updated["generator"]["expression"] == "30 18 * * *" and updated["timezone"] == "Asia/Tokyo"
    assert "externalId" not in updated and updated["nextRun"] != created["nextRun"]
    assert missing.status_code == 404 and invalid.status_code == 422


def test_a_schedule_without_deduplication_key_cannot_be_updated(server: LiveServer) -> None:
    schedule = server.tether.schedules.create(task="report", cron="0 9 * * *")
    with server.client() as client:
        response = client.put(f"{SCHEDULES}/{schedule.id}", json={"task": "report", "cron": "0 1 * * *"})
    # 400, not 409: the SDK retries a 409 for seconds, and this would fail the same way
    assert response.status_code == 400 and "deduplication key" in response.json()["error"]
    assert server.tether.schedules.retrieve(schedule.id).cron == "0 9 * * *"


def test_delete(server: LiveServer) -> None:
    with server.client() as client:
        created = create(client)
        deleted = client.delete(f"{SCHEDULES}/{created['id']}")
        after = client.get(f"{SCHEDULES}/{created['id']}")
        again = client.delete(f"{SCHEDULES}/{created['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": created["id"]}
    assert after.status_code == 404 and again.status_code == 404


def test_a_retried_delete_gets_the_first_answer(server: LiveServer) -> None:
    retry = {"x-trigger-request-idempotency-key": "8d2e-retry"}
    with server.client() as client:
        created = create(client)
        first = client.delete(f"{SCHEDULES}/{created['id']}", headers=retry)
        again = client.delete(f"{SCHEDULES}/{created['id']}", headers=retry)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"id": created["id"]}


def test_deactivate_and_activate(server: LiveServer) -> None:
    with server.client() as client:
        created = create(client)
        off = client.post(f"{SCHEDULES}/{created['id']}/deactivate").json()
        on = client.post(f"{SCHEDULES}/{created['id']}/activate").json()
        missing = [client.post(f"{SCHEDULES}/sched_missing/{a}") for a in ("activate", "deactivate")]
    assert off["active"] is False and "nextRun" not in off
    assert on["active"] is True and on["nextRun"]
    assert [r.status_code for r in missing] == [404, 404]


def test_declared_schedules_are_read_only_over_the_api(server: LiveServer) -> None:
    schedule_id = declared(server)
    with server.client() as client:
        found = client.get(f"{SCHEDULES}/{schedule_id}").json()
        refused = [
            client.put(f"{SCHEDULES}/{schedule_id}", json={"task": "report", "cron": "0 1 * * *"}),
            client.delete(f"{SCHEDULES}/{schedule_id}"),
            client.post(SCHEDULES, json={"task": "report", "cron": "0 1 * * *",
                                         "deduplicationKey": declared_key("report")}),
        ]
        off = client.post(f"{SCHEDULES}/{schedule_id}/deactivate")
    assert found["type"] == "DECLARATIVE" and found["deduplicationKey"] == "task:report"
    assert found["generator"]["description"] == "At the start of every hour"
    for response in refused:  # 400, not the 409 that the SDK retries for about 9 s
        assert response.status_code == 400, response.text
        assert "declared in code" in response.json()["error"]
    kept = server.tether.schedules.retrieve(schedule_id)
    assert kept.cron == "0 * * * *" and kept.declared
    assert off.status_code == 200 and off.json()["active"] is False


def test_timezones_need_no_key(server: LiveServer) -> None:
    """As Trigger.dev serves them: the SDK's `schedules.timezones()` sends no API key."""
    with server.client("") as client:
        everything = client.get("/api/v1/timezones").json()
        without_utc = client.get("/api/v1/timezones", params={"excludeUtc": "true"}).json()
    zones = everything["timezones"]
    # UTC first, as the SDK documents, then the IANA names in order
    assert set(everything) == {"timezones"} and zones[0] == "UTC" and zones[1:] == sorted(zones[1:])
    assert {"UTC", "Europe/London", "America/New_York"} <= set(zones)
    assert "UTC" not in without_utc["timezones"] and len(without_utc["timezones"]) == len(zones) - 1


@pytest.mark.parametrize("key", ["", "tk_wrong"])
def test_every_schedule_route_needs_a_valid_key(server: LiveServer, key: str) -> None:
    schedule = server.tether.schedules.create(task="report", cron="0 9 * * *",
                                              deduplication_key="kept")
    one = f"{SCHEDULES}/{schedule.id}"
    body = {"task": "cleanup", "cron": "0 1 * * *", "deduplicationKey": "kept"}
    with server.client(key) as client:
        responses = [
            client.post(SCHEDULES, json=body), client.get(SCHEDULES), client.get(one),
            client.put(one, json=body), client.delete(one), client.post(f"{one}/activate"),
            client.post(f"{one}/deactivate"),
        ]
    for response in responses:
        assert response.status_code == 401, response.text
        assert "API key" in response.json()["error"]
    assert server.tether.schedules.list() == [schedule]
