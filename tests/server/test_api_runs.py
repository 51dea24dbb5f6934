"""Reading and managing runs over real HTTP, on both backends: the run object after a run
completed or failed and across a parent and its children, the cursor-paged list with its filters,
cancel, replay, reschedule, retry, tags and metadata."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether import Context, Retry, Tether, Worker
from tether.storage.records import RunFilter

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

STATUSES = {"PENDING_VERSION", "DELAYED", "QUEUED", "DEQUEUED", "EXECUTING", "WAITING",
            "COMPLETED", "CANCELED", "FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"}
COMMON = {"id", "status", "taskIdentifier", "isQueued", "isExecuting", "isWaiting", "isCompleted",
          "isSuccess", "isFailed", "isCancelled", "isTest", "createdAt", "updatedAt", "tags",
          "costInCents", "baseCostInCents", "durationMs"}


@pytest.fixture
def healed() -> list[bool]:
    """Append to it and the `boom` task succeeds from then on."""
    return []


@pytest.fixture
def app(live_server: LiveServer, healed: list[bool]) -> Iterator[Tether]:
    """Tasks registered in the server's database: `echo`, `boom` (fails, one attempt, until
    `healed`), `parent` (waits for `echo` children)."""
    app = Tether(live_server.tether.database_url)

    @app.task(id="echo")
    async def echo(payload: Any) -> Any:
        return payload

    @app.task(id="boom", retry=Retry(max_attempts=1))
    async def boom(payload: Any) -> str:
        if not healed:
            raise ValueError(f"boom: {payload}")
        return "healed"

    @app.task(id="parent")
    async def parent(payload: Any, ctx: Context) -> Any:
        one = await ctx.trigger_and_wait(echo, "one")
        many = await ctx.batch_trigger_and_wait(echo, ["a", "b"])
        return [one, [r.output for r in many]]

    now = app.clock.now()
    app.storage.register_tasks([t.record(now) for t in app.tasks.values()],
                               [t.queue_record() for t in app.tasks.values()])
    yield app
    app.close()


def drain(app: Tether) -> int:
    return asyncio.run(Worker(app).run_until_idle())


def trigger(client: httpx.Client, task: str, payload: Any = None, **options: Any) -> str:
    response = client.post(f"/api/v1/tasks/{task}/trigger",
                           json={"payload": payload, "options": options})
    assert response.status_code == 200, response.text
    run_id: str = response.json()["id"]
    return run_id


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return get(client, f"/api/v3/runs/{run_id}")


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    message: str = response.json()["error"]
    return message


# -- the run object ---------------------------------------------------------------------------------
def test_a_completed_run(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        run_id = trigger(client, "echo", {"ok": [1, None]}, tags=["b", "a"])
        drain(app)
        found = run(client, run_id)
    assert found["status"] == "COMPLETED" and found["status"] in STATUSES
    assert found["isCompleted"] and found["isSuccess"] and not found["isFailed"]
    assert not (found["isQueued"] or found["isExecuting"] or found["isWaiting"])
    assert found["output"] == {"ok": [1, None]} and found["payload"] == {"ok": [1, None]}
    assert found["startedAt"].endswith("Z") and found["finishedAt"].endswith("Z")
    assert found["durationMs"] >= 0 and found["attemptCount"] == 1
    assert found["tags"] == ["a", "b"] and found["costInCents"] == 0
    for absent in ("error", "ttl", "delayedUntil", "expiredAt", "batchId", "idempotencyKey"):
        assert absent not in found, absent


def test_a_failed_run_has_an_error_and_no_output(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        run_id = trigger(client, "boom", 7)
        drain(app)
        found = run(client, run_id)
    assert found["status"] == "FAILED" and found["isFailed"] and found["isCompleted"]
    assert not found["isSuccess"] and "output" not in found
    assert found["error"]["message"] == "boom: 7" and found["error"]["name"] == "ValueError"
    assert "ValueError: boom: 7" in found["error"]["stackTrace"]


def test_related_runs_and_trigger_functions(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        parent_id = trigger(client, "parent")
        drain(app)
        parent = run(client, parent_id)
        children = parent["relatedRuns"]["children"]
        waited = [run(client, c["id"]) for c in children]
    assert parent["status"] == "COMPLETED" and parent["output"] == ["one", ["a", "b"]]
    assert parent["relatedRuns"].keys() == {"children"} and len(children) == 3
    assert {c["triggerFunction"] for c in children} == {"triggerAndWait", "batchTriggerAndWait"}
    assert all(COMMON | {"depth", "triggerFunction"} <= set(c) for c in children)
    assert all("payload" not in c and "relatedRuns" not in c for c in children)
    by_payload = {c["payload"]: c for c in waited}
    assert by_payload["one"]["triggerFunction"] == "triggerAndWait"
    assert by_payload["a"]["triggerFunction"] == "batchTriggerAndWait"
    for child in waited:
        assert child["depth"] == 1 and child["relatedRuns"]["children"] == []
        assert child["relatedRuns"]["parent"]["id"] == parent_id
        assert child["relatedRuns"]["root"]["id"] == parent_id
        assert child["relatedRuns"]["parent"]["triggerFunction"] == "trigger"


def test_a_scheduled_run_names_its_schedule(live_server: LiveServer, app: Tether) -> None:
    schedule = app.schedules.create(task="echo", cron="0 9 * * 1-5", deduplication_key="daily",
                                    external_id="user-1")
    with live_server.client() as client:
        found = run(client, trigger(client, "echo", tags=[f"schedule:{schedule.id}"]))
    assert found["schedule"]["id"] == schedule.id
    assert found["schedule"]["externalId"] == "user-1"
    assert found["schedule"]["deduplicationKey"] == "daily"
    assert found["schedule"]["generator"]["type"] == "CRON"
    assert found["schedule"]["generator"]["expression"] == "0 9 * * 1-5"
    assert found["schedule"]["generator"]["description"]


def test_unknown_run_is_404_and_no_key_is_401(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        missing = client.get("/api/v3/runs/run_nope")
    with live_server.client("") as anonymous, live_server.client("tk_bad") as wrong:
        unauthorized = [anonymous.get("/api/v3/runs/run_nope"), wrong.get("/api/v1/runs")]
    assert "'run_nope'" in error_of(missing, 404)
    for response in unauthorized:
        assert "API key" in error_of(response, 401)


# -- the list -----------------------------------------------------------------------------------------
def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def test_pages_go_both_ways_and_end_cleanly(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        made = [trigger(client, "echo", i) for i in range(7)]
        newest_first = made[::-1]
        def page(**cursor: str) -> dict[str, Any]:
            return get(client, "/api/v1/runs", **{"page[size]": 3},
                       **{f"page[{k}]": v for k, v in cursor.items()})

        first = page()
        second = page(after=first["pagination"]["next"])
        third = page(after=second["pagination"]["next"])
        back = page(before=third["pagination"]["previous"])
        top = page(before=back["pagination"]["previous"])
        # the SDK's getPreviousPage() after getNextPage() sends both: before wins (Trigger.dev)
        both = page(after=second["pagination"]["next"], before=second["pagination"]["previous"])
        everything = get(client, "/api/v1/runs")
    assert ids(first) == newest_first[:3] and first["pagination"] == {"next": newest_first[2]}
    assert ids(second) == newest_first[3:6]
    assert second["pagination"] == {"next": newest_first[5], "previous": newest_first[3]}
    assert ids(third) == newest_first[6:] and third["pagination"] == {"previous": newest_first[6]}
    assert ids(back) == ids(second) and back["pagination"] == second["pagination"]
    assert ids(top) == ids(first) and top["pagination"] == first["pagination"]
    assert ids(both) == ids(first) and both["pagination"] == first["pagination"]
    assert ids(everything) == newest_first and everything["pagination"] == {}


def test_list_items_have_env_and_no_run_details(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        trigger(client, "echo", 1, metadata={"m": 1})
        item = get(client, "/api/v1/runs")["data"][0]
    assert set(item) >= COMMON and item["env"] == {"id": "env_tether", "name": "tether"}
    assert item["status"] in STATUSES and item["metadata"] == {"m": 1}
    for absent in ("payload", "output", "relatedRuns", "error", "startedAt", "depth"):
        assert absent not in item


def test_list_filters(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        done = trigger(client, "echo", 1, tags=["keep", "x"])
        failed = trigger(client, "boom", 2, tags=["keep"])
        drain(app)
        queued = trigger(client, "echo", 3, queue={"name": "other"})
        batch = client.post("/api/v2/tasks/batch", json={"items": [{"task": "echo"}]}).json()
        now_ms = int(time.time() * 1000)

        def listed(**params: Any) -> list[str]:
            return ids(get(client, "/api/v1/runs", **params))

        assert listed(**{"filter[status]": "COMPLETED,failed"}) == [failed, done]
        assert listed(**{"filter[status]": "CRASHED,SYSTEM_FAILURE"}) == []
        assert listed(**{"filter[taskIdentifier]": "boom"}) == [failed]
        assert listed(**{"filter[tag]": "keep"}) == [failed, done]
        assert listed(**{"filter[tag]": "x, nope"}) == [done]
        assert listed(**{"filter[queue]": "other"}) == [queued]
        assert listed(**{"filter[batch]": batch["id"]}) == [batch["runs"][0]["id"]]
        assert listed(**{"filter[createdAt][from]": now_ms + 60_000}) == []
        assert len(listed(**{"filter[createdAt][to]": now_ms + 60_000})) == 4
        assert len(listed(**{"filter[createdAt][period]": "1h"})) == 4
        assert listed(**{"filter[isTest]": "true"}) == []
        assert listed(**{"filter[version]": "20240101.1"}) == []


def test_the_queue_filter_takes_the_names_runs_show(live_server: LiveServer, app: Tether) -> None:
    """The SDK sends `{type: "task", name: "echo"}` as `task/echo` and a custom queue by its
    name; a run shows its queue as `{name, type}`: each form finds the run."""
    with live_server.client() as client:
        own = trigger(client, "echo", 1)
        custom = trigger(client, "echo", 2, queue={"name": "team/exports"})

        def listed(queue: str) -> list[str]:
            return ids(get(client, "/api/v1/runs", **{"filter[queue]": queue}))

        shown = [run(client, own)["queue"], run(client, custom)["queue"]]
        assert shown == [{"name": "echo", "type": "task"},
                         {"name": "team/exports", "type": "custom"}]
        assert listed("task/echo") == listed("echo") == [own]
        assert listed("team/exports") == listed("custom/team/exports") == [custom]
        assert listed("task/echo,team/exports") == [custom, own]
        assert listed("task/nope") == listed("custom/echo/x") == []


@pytest.mark.parametrize(("params", "needle"), [
    ({"filter[status]": "DONE"}, "unknown status(es) ['DONE'] in filter[status]; valid: "
                                 "PENDING_VERSION, DELAYED, QUEUED"),
    ({"page[size]": 101}, "page[size]"),
    ({"page[size]": 0}, "page[size]"),
    ({"filter[createdAt][period]": "a week"}, "filter[createdAt][period]"),
    ({"filter[createdAt][from]": "yesterday"}, "filter[createdAt][from]"),
])
def test_invalid_list_queries_are_422(live_server: LiveServer, app: Tether,
                                      params: dict[str, Any], needle: str) -> None:
    with live_server.client() as client:
        response = client.get("/api/v1/runs", params=params)
    assert needle in error_of(response, 422)


# -- managing runs ------------------------------------------------------------------------------------
def test_cancel_cancels_children_and_refuses_a_finished_run(
        live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        parent = trigger(client, "echo", 1, delay="1h")
        child = trigger(client, "echo", 2, parentRunId=parent)
        answer = client.post(f"/api/v2/runs/{parent}/cancel")
        again = client.post(f"/api/v2/runs/{parent}/cancel")
        missing = client.post("/api/v2/runs/run_nope/cancel")
        found, child_run = run(client, parent), run(client, child)
    assert answer.status_code == 200 and answer.json() == {"id": parent}
    assert found["status"] == "CANCELED" and found["isCancelled"] and found["isCompleted"]
    assert child_run["status"] == "CANCELED" and child_run["depth"] == 1
    assert child_run["relatedRuns"]["parent"]["id"] == parent
    assert "already ended CANCELED" in error_of(again, 400)
    assert "'run_nope'" in error_of(missing, 404)


def test_replay_makes_a_new_run_once_per_request_key(live_server: LiveServer, app: Tether) -> None:
    key = {"x-trigger-request-idempotency-key": "replay-1"}
    with live_server.client() as client:
        original = trigger(client, "echo", {"p": 1}, tags=["t"], metadata={"m": 2})
        first = client.post(f"/api/v1/runs/{original}/replay", headers=key)
        again = client.post(f"/api/v1/runs/{original}/replay", headers=key)
        replayed = run(client, first.json()["id"])
        missing = client.post("/api/v1/runs/run_nope/replay")
    assert first.status_code == 200 and first.json() == again.json()
    assert replayed["id"] != original and replayed["payload"] == {"p": 1}
    assert replayed["tags"] == ["t"] and replayed["metadata"] == {"m": 2}
    assert len(live_server.tether.storage.list_runs(RunFilter())) == 2
    assert error_of(missing, 404)


def test_reschedule_only_a_delayed_run(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        delayed = trigger(client, "echo", 1, delay="1h")
        moved = client.post(f"/api/v1/runs/{delayed}/reschedule", json={"delay": "2h"})
        queued = trigger(client, "echo", 2)
        refused = client.post(f"/api/v1/runs/{queued}/reschedule", json={"delay": "1h"})
        bad = client.post(f"/api/v1/runs/{delayed}/reschedule", json={"delay": "later"})
        no_body = client.post(f"/api/v1/runs/{delayed}/reschedule", json={})
        missing = client.post("/api/v1/runs/run_nope/reschedule", json={"delay": "1h"})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["id"] == delayed and body["status"] == "DELAYED" and "relatedRuns" in body
    stored = live_server.tether.storage.get_run(delayed)
    assert stored is not None and 7190 < stored.available_at - time.time() <= 7200
    assert "only DELAYED runs reschedule" in error_of(refused, 400)
    assert "delay" in error_of(bad, 422) and "delay" in error_of(no_body, 422)
    assert error_of(missing, 404)


def test_retry_a_failed_run_from_where_it_failed(live_server: LiveServer, app: Tether,
                                                 healed: list[bool]) -> None:
    with live_server.client() as client:
        failed = trigger(client, "boom", 1)
        drain(app)
        healed.append(True)
        retried = client.post(f"/api/v1/runs/{failed}/retry")
        drain(app)
        healed = run(client, failed)
        refused = client.post(f"/api/v1/runs/{failed}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "QUEUED" and retried.json()["id"] == failed
    assert healed["status"] == "COMPLETED" and healed["output"] == "healed"
    assert healed["attemptCount"] == 2 and "error" not in healed
    assert "only FAILED, TIMED_OUT or CANCELED runs retry" in error_of(refused, 400)


def test_tags_are_added_sorted_and_limited(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        run_id = trigger(client, "echo", 1, tags=["b"])
        added = client.post(f"/api/v1/runs/{run_id}/tags", json={"tags": ["c", "a", "b"]})
        one = client.post(f"/api/v1/runs/{run_id}/tags", json={"tags": "d"})
        too_many = client.post(f"/api/v1/runs/{run_id}/tags",
                               json={"tags": [f"t{i}" for i in range(7)]})
        too_long = client.post(f"/api/v1/runs/{run_id}/tags", json={"tags": ["x" * 129]})
        missing = client.post("/api/v1/runs/run_nope/tags", json={"tags": ["a"]})
        found = run(client, run_id)
    assert added.json() == {"message": "Successfully set 2 new tags."}
    assert one.json() == {"message": "Successfully set 1 new tag."}
    assert found["tags"] == ["a", "b", "c", "d"]
    assert "at most 10 tags" in error_of(too_many, 422)
    assert "128 characters" in error_of(too_long, 422)
    assert error_of(missing, 404)


def test_metadata_get_replace_and_operations(live_server: LiveServer, app: Tether) -> None:
    path = "/api/v1/runs/{}/metadata"
    with live_server.client() as client:
        run_id = trigger(client, "echo", 1, metadata={"keep": 1})
        initial = get(client, path.format(run_id))
        replaced = client.put(path.format(run_id), json={"metadata": {"a": 1, "n": 1}})
        operated = client.put(path.format(run_id), json={"operations": [
            {"type": "increment", "key": "n", "value": 2}, {"type": "append", "key": "log",
                                                             "value": "x"},
            {"type": "delete", "key": "a"}, {"type": "update", "value": {"u": True}},
            {"type": "set", "key": "s", "value": [1]}]})
        unknown = client.put(path.format(run_id), json={"operations": [{"type": "explode"}]})
        keyless = client.put(path.format(run_id), json={"operations": [{"type": "set"}]})
        not_object = client.put(path.format(run_id), json={"metadata": [1]})
        missing = client.get(path.format("run_nope"))
        found = run(client, run_id)
    assert initial == {"metadata": {"keep": 1}}
    assert replaced.json() == {"metadata": {"a": 1, "n": 1}}
    assert operated.json() == {"metadata": {"n": 3, "log": ["x"], "u": True, "s": [1]}}
    assert found["metadata"] == operated.json()["metadata"]
    assert "unknown metadata operation 'explode'" in error_of(unknown, 422)
    assert "needs a key" in error_of(keyless, 422)
    assert "metadata" in error_of(not_object, 422)
    assert error_of(missing, 404)


def test_management_routes_need_a_key(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        run_id = trigger(client, "echo", 1, delay="1h")
    with live_server.client("") as anonymous:
        answers = [anonymous.post(f"/api/v2/runs/{run_id}/cancel"),
                   anonymous.post(f"/api/v1/runs/{run_id}/replay"),
                   anonymous.post(f"/api/v1/runs/{run_id}/reschedule", json={"delay": "2h"}),
                   anonymous.post(f"/api/v1/runs/{run_id}/retry"),
                   anonymous.post(f"/api/v1/runs/{run_id}/tags", json={"tags": ["a"]}),
                   anonymous.get(f"/api/v1/runs/{run_id}/metadata"),
                   anonymous.put(f"/api/v1/runs/{run_id}/metadata", json={"metadata": {}})]
    for response in answers:
        assert "API key" in error_of(response, 401)
    stored = live_server.tether.storage.get_run(run_id)
    assert stored is not None and stored.status == "DELAYED" and stored.tags == "[]"
    assert len(live_server.tether.storage.list_runs(RunFilter())) == 1


def test_replay_applies_the_overrides_of_its_body(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        original = trigger(client, "echo", {"p": 1}, tags=["t"], metadata={"m": 2})
        answer = client.post(f"/api/v1/runs/{original}/replay",
                             json={"payload": '{"json":{"p":2}}', "payloadType": "application/super+json",
                                   "tags": ["new"], "delay": "1h", "machine": "small-1x"})
        replayed = run(client, answer.json()["id"])
        bad = client.post(f"/api/v1/runs/{original}/replay", json={"maxAttempts": 0})
    assert answer.status_code == 200, answer.text
    assert replayed["payload"] == {"p": 2} and replayed["tags"] == ["new"]
    assert replayed["metadata"] == {"m": 2} and replayed["status"] == "DELAYED"
    assert "maxAttempts" in error_of(bad, 422)
