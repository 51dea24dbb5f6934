"""Triggering over real HTTP, on both backends: one run with every option, payload encodings
(superjson, text, JSON text, uploaded packets), Trigger.dev's idempotency (a key whose run failed
is released), request idempotency, and batches (streamed with dedupe by index, and one-request)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import BaseModel

from tether import Context, PayloadError, Queue, Retry, Tether, Worker
from tether.storage.records import RunFilter, RunRecord

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

STATUSES = {"PENDING_VERSION", "DELAYED", "QUEUED", "DEQUEUED", "EXECUTING", "WAITING",
            "COMPLETED", "CANCELED", "FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"}
REQUIRED = {"id", "status", "taskIdentifier", "isQueued", "isExecuting", "isWaiting",
            "isCompleted", "isSuccess", "isFailed", "isCancelled", "isTest", "createdAt",
            "updatedAt", "tags", "costInCents", "baseCostInCents", "durationMs", "depth",
            "triggerFunction", "relatedRuns", "attemptCount"}


# -- a worker app on the server's database ----------------------------------------------------------
@pytest.fixture
def app(live_server: LiveServer) -> Iterator[Tether]:
    """Tasks `echo` (returns its payload), `boom` (fails, one attempt) and `parent` (waits for
    `echo` children), registered in the database the way a worker registers them."""
    app = Tether(live_server.tether.database_url)

    @app.task(id="echo", queue=Queue("echoes", concurrency=5))
    async def echo(payload: Any) -> Any:
        return payload

    @app.task(id="boom", retry=Retry(max_attempts=1))
    async def boom(payload: Any) -> None:
        raise ValueError(f"boom: {payload}")

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
    """Execute every run that is ready now; the number of attempts run."""
    return asyncio.run(Worker(app).run_until_idle())


def record(server: LiveServer, run_id: str) -> RunRecord:
    found = server.tether.storage.get_run(run_id)
    assert found is not None
    return found


def trigger(client: httpx.Client, task: str, payload: Any = None, status: int = 200,
            **options: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/tasks/{task}/trigger",
                           json={"payload": payload, "options": options})
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v3/runs/{run_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    message: str = response.json()["error"]
    return message


# -- one run ----------------------------------------------------------------------------------------
def test_trigger_answers_id_and_the_run_object_omits_absent_fields(
        live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        created = trigger(client, "echo", {"n": 1})
        found = run(client, created["id"])
    assert created == {"id": created["id"], "isCached": False}
    assert created["id"].startswith("run_")
    assert set(found) >= REQUIRED and found["status"] in STATUSES
    assert found["status"] == "QUEUED" and found["isQueued"] is True
    assert found["isCompleted"] is False and found["isTest"] is False
    assert found["taskIdentifier"] == "echo" and found["payload"] == {"n": 1}
    assert found["depth"] == 0 and found["triggerFunction"] == "trigger"
    assert found["relatedRuns"] == {"children": []} and found["attemptCount"] == 0
    assert found["createdAt"].endswith("Z") and found["durationMs"] == 0
    assert found["queue"] == {"name": "echoes", "type": "custom"}
    for absent in ("idempotencyKey", "version", "startedAt", "finishedAt", "delayedUntil", "ttl",
                   "expiredAt", "metadata", "batchId", "output", "error", "schedule"):
        assert absent not in found, absent


def test_every_trigger_option_reaches_the_run(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        created = trigger(client, "echo", "x", queue={"name": "special"}, concurrencyKey="user-7",
                          delay="1h", ttl="10m", idempotencyKey="hash-of-k",
                          idempotencyKeyTTL="5m", idempotencyKeyOptions={"key": "k", "scope": "global"},
                          maxAttempts=3, maxDuration=5, priority=30, metadata={"a": 1},
                          tags="solo", lockToVersion="20240101.1", test=False, machine="small-1x")
        found = run(client, created["id"])
    stored = record(live_server, created["id"])
    assert (stored.queue, stored.concurrency_key, stored.priority) == ("special", "user-7", 30)
    assert (stored.max_attempts, stored.max_duration) == (3, 5)
    assert stored.idempotency_key == "k" and stored.expires_at is not None
    assert 3590 < stored.available_at - stored.created_at <= 3600
    assert found["status"] == "DELAYED" and found["isQueued"] is True
    assert found["delayedUntil"].endswith("Z") and found["ttl"] == "10m"
    assert found["idempotencyKey"] == "k" and found["metadata"] == {"a": 1}
    assert found["tags"] == ["solo"] and found["concurrencyKey"] == "user-7"


def test_delay_as_a_date_ttl_in_seconds_and_compound_durations(live_server: LiveServer, app: Tether) -> None:
    at = time.time() + 7200
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    with live_server.client() as client:
        dated = trigger(client, "echo", delay=iso + "Z", ttl=90)
        naive = trigger(client, "echo", delay=iso)  # no offset: UTC
        compound = trigger(client, "echo", delay="1h30m", ttl="2h15m", idempotencyKey="c",
                           idempotencyKeyTTL="1d12h")
        assert run(client, dated["id"])["ttl"] == "90s"
        assert run(client, compound["id"])["ttl"] == "135m"
    assert abs(record(live_server, dated["id"]).available_at - int(at)) < 1
    assert abs(record(live_server, naive["id"]).available_at - int(at)) < 1
    stored = record(live_server, compound["id"])
    assert stored.available_at - stored.created_at == pytest.approx(5400)
    assert stored.idempotency_expires_at is not None
    assert stored.idempotency_expires_at - stored.created_at == pytest.approx(129600)


def test_unknown_task_is_404_and_stores_nothing(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        response = client.post("/api/v1/tasks/nope/trigger", json={"payload": 1})
    message = error_of(response, 404)
    assert message.startswith("Task not found") and "'nope'" in message and "echo" in message
    assert live_server.tether.storage.list_runs(RunFilter()) == []


@pytest.mark.parametrize(("options", "needle"), [
    ({"maxAttempts": 0}, "maxAttempts"),
    ({"tags": [f"t{i}" for i in range(11)]}, "at most 10 tags"),
    ({"tags": ["x" * 129]}, "1 to 128 characters"),
    ({"delay": "soon"}, "delay"),
    ({"ttl": "forever"}, "ttl"),
    ({"metadata": [1, 2]}, "metadata must be a JSON object"),
    ({"payloadType": "application/xml"}, "unknown payloadType"),
    ({"payloadType": "text/plain"}, "must be sent as a string"),
    ({"payloadType": "application/super+json"}, "superjson"),
    ({"payloadType": "application/store"}, "must be sent as a string"),
    ({"parentRunId": "run_missing"}, "parentRunId"),
    ({"debounce": {"key": "k", "delay": "0s"}}, "Debounce delay"),
])
def test_invalid_options_are_422_with_a_clear_message(
        live_server: LiveServer, app: Tether, options: dict[str, Any], needle: str) -> None:
    with live_server.client() as client:
        response = client.post("/api/v1/tasks/echo/trigger",
                               json={"payload": {"a": 1}, "options": options})
    assert needle in error_of(response, 422)
    assert live_server.tether.storage.list_runs(RunFilter()) == []


class Line(BaseModel):
    name: str


class Signup(BaseModel):
    email: str
    age: int
    lines: list[Line] = []


def test_an_invalid_payload_reads_as_it_does_in_python(live_server: LiveServer) -> None:
    """`tether serve` validates with the registry's JSON schema, Python with the model: one
    message, `payload for task 'signup' is invalid at <where>: <why>`, 422 over HTTP."""
    coded = Tether(live_server.tether.database_url)

    @coded.task(id="signup")
    async def signup(payload: Signup) -> None: ...

    coded.storage.register_tasks([signup.record(coded.clock.now())], [signup.queue_record()])
    nested = {"email": "a", "age": 1, "lines": [{"name": "x"}, {"name": "y"}, {"nom": "z"}]}
    try:
        with live_server.client() as client:
            for payload in ({"age": 30}, nested):
                with pytest.raises(PayloadError) as in_python:
                    signup.trigger(payload)
                answer = trigger(client, "signup", payload, status=422)
                assert answer == {"error": str(in_python.value)}
            typed = error_of(client.post("/api/v1/tasks/signup/trigger",
                                         json={"payload": {"email": "a", "age": "old"}}), 422)
            item = error_of(client.post("/api/v2/tasks/batch", json={"items": [
                {"task": "signup", "payload": {"email": "a", "age": 1}},
                {"task": "signup", "payload": {"age": 1}}]}), 422)
    finally:
        coded.close()
    assert answer == {"error": "payload for task 'signup' is invalid at lines[2].name: Field "
                               "required"}
    assert typed.startswith("payload for task 'signup' is invalid at age: ")
    assert item == "item 1: payload for task 'signup' is invalid at email: Field required"
    assert live_server.tether.storage.list_runs(RunFilter()) == []


def test_nul_characters_are_refused_before_storage(live_server: LiveServer, app: Tether) -> None:
    """PostgreSQL refuses NUL in text: ids, keys, names and tags with one are a 422."""
    with live_server.client() as client:
        answers = [client.post("/api/v1/tasks/ec%00ho/trigger", json={}),
                   client.get("/api/v3/runs/run_%00"),
                   client.get("/api/v1/runs", params={"filter[tag]": "a\x00"}),
                   client.get("/api/v2/batches/batch_%00"),
                   client.put("/api/v2/packets/a%00.json"),
                   client.post("/api/v3/batches", json={"runCount": 1, "idempotencyKey": "\x00"})]
        answers += [client.post("/api/v1/tasks/echo/trigger", json={"options": options})
                    for options in ({"concurrencyKey": "a\x00"}, {"tags": ["a\x00"]},
                                    {"tags": "\x00"}, {"idempotencyKey": "a\x00"},
                                    {"queue": {"name": "q\x00"}})]
        text = trigger(client, "echo", "nul \x00 inside a payload is fine")
    for response in answers:
        assert "NUL" in error_of(response, 422) or "invalid packet path" in response.text
    assert record(live_server, text["id"]).payload == '"nul \\u0000 inside a payload is fine"'


def test_a_body_that_is_not_json_is_400(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        response = client.post("/api/v1/tasks/echo/trigger", content=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert error_of(response, 400) == ("request body is not valid JSON: Expecting property name "
                                       "enclosed in double quotes at line 1 column 2")


@pytest.mark.parametrize("key", ["", "tk_wrong", "Basic abc"])
def test_without_a_valid_key_every_trigger_route_is_401_and_creates_nothing(
        live_server: LiveServer, app: Tether, key: str) -> None:
    headers = {"Authorization": key} if key.startswith("Basic") else {}
    with live_server.client("" if headers else key) as client:
        batch = client.post("/api/v3/batches", json={"runCount": 1}, headers=headers)
        answers = [
            client.post("/api/v1/tasks/echo/trigger", json={"payload": 1}, headers=headers),
            batch,
            client.post("/api/v3/batches/batch_x/items", content=b'{"index":0,"task":"echo"}\n',
                        headers={**headers, "Content-Type": "application/x-ndjson"}),
            client.post("/api/v2/tasks/batch", json={"items": [{"task": "echo"}]},
                        headers=headers),
            client.get("/api/v2/batches/batch_x", headers=headers),
            client.put("/api/v2/packets/a/payload.json", headers=headers),
            client.get("/api/v1/packets/a/payload.json", headers=headers)]
    for response in answers:
        assert "API key" in error_of(response, 401)
    assert live_server.tether.storage.list_runs(RunFilter()) == []


# -- payload encodings --------------------------------------------------------------------------------
SUPERJSON = {"json": {"when": "2024-05-01T12:00:00.000Z", "big": "12345678901234567890",
                      "gone": None, "tags": ["a", "b"], "map": [["x", 1], ["y", {"at": None}]],
                      "list": [None, 2]},
             "meta": {"values": {"when": ["Date"], "big": ["bigint"], "gone": ["undefined"],
                                 "tags": ["set"], "map": ["map", {"1.1.at": ["undefined"]}],
                                 "list.0": ["undefined"]}}}


@pytest.mark.parametrize(("payload", "payload_type", "expected"), [
    (json.dumps(SUPERJSON), "application/super+json",
     {"when": "2024-05-01T12:00:00.000Z", "big": 12345678901234567890, "tags": ["a", "b"],
      "map": {"x": 1, "y": {}}, "list": [None, 2]}),
    (json.dumps({"json": "2024-05-01T00:00:00.000Z", "meta": {"values": ["Date"]}}),
     "application/super+json", "2024-05-01T00:00:00.000Z"),
    (json.dumps({"json": {"plain": True}}), "application/super+json", {"plain": True}),
    ("hello there", "text/plain", "hello there"),
    ('{"a": [1, 2]}', "application/json", {"a": [1, 2]}),
    ({"raw": "json"}, None, {"raw": "json"}),
])
def test_payload_types_are_decoded_for_the_task(
        live_server: LiveServer, app: Tether, payload: Any, payload_type: str | None,
        expected: Any) -> None:
    options = {"payloadType": payload_type} if payload_type else {}
    with live_server.client() as client:
        created = trigger(client, "echo", payload, **options)
        assert run(client, created["id"])["payload"] == expected
        drain(app)
        assert run(client, created["id"])["output"] == expected


def _upload(client: httpx.Client, filename: str, data: bytes) -> str:
    answer = client.put(f"/api/v2/packets/{filename}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"presignedUrl", "storagePath"} and body["storagePath"] == filename
    with httpx.Client(timeout=10) as anonymous:  # the SDK uploads without its API key
        uploaded = anonymous.put(body["presignedUrl"], content=data,
                                 headers={"Content-Type": "application/super+json"})
    assert uploaded.status_code == 200, uploaded.text
    storage_path: str = body["storagePath"]
    return storage_path


def test_large_payloads_go_through_an_uploaded_packet(live_server: LiveServer, app: Tether) -> None:
    big = {"rows": ["x" * 100] * 2000}
    with live_server.client() as client:
        path = _upload(client, "trigger/echo/1-abc/payload.json",
                       json.dumps({"json": big}).encode())
        text_path = _upload(client, "trigger/echo/2-def/payload.txt", "plain ü".encode())
        created = trigger(client, "echo", path, payloadType="application/store")
        texted = trigger(client, "echo", text_path, payloadType="application/store")
        read_back = client.get(f"/api/v1/packets/{path}")
        assert run(client, created["id"])["payload"] == big
        assert run(client, texted["id"])["payload"] == "plain ü"
    assert read_back.status_code == 200 and json.loads(read_back.content) == {"json": big}


def test_packet_errors(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        url = client.put("/api/v2/packets/p/payload.json").json()["presignedUrl"]
        missing = client.post("/api/v1/tasks/echo/trigger", json={
            "payload": "p/payload.json", "options": {"payloadType": "application/store"}})
        unread = client.get("/api/v1/packets/nothing/here.json")
        dots = client.put("/api/v2/packets/a/%2E%2E/b.json")
        empty_part = client.put("/api/v2/packets/a//b.json")
    with httpx.Client(timeout=10) as anonymous:
        forged = anonymous.put(url.replace("signature=", "signature=x"), content=b"{}")
        other_path = anonymous.put(url.replace("/p/payload.json", "/q/payload.json"), content=b"{}")
        unsigned = anonymous.put(url.split("?")[0], content=b"{}")
    assert "no uploaded payload packet at 'p/payload.json'" in error_of(missing, 422)
    assert "no payload packet" in error_of(unread, 404)
    assert "invalid packet path" in error_of(dots, 422)
    assert "invalid packet path" in error_of(empty_part, 422)
    for response in (forged, other_path, unsigned):
        assert "signature" in error_of(response, 403)
    assert live_server.tether.storage.get_packet("q/payload.json") is None


# -- idempotency ------------------------------------------------------------------------------------
def test_a_live_key_returns_the_run_as_cached(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        first = trigger(client, "echo", 1, idempotencyKey="order-1")
        again = trigger(client, "echo", 2, idempotencyKey="order-1")
        other_task = trigger(client, "boom", 1, idempotencyKey="order-1")
    assert again == {"id": first["id"], "isCached": True}
    assert other_task["id"] != first["id"] and other_task["isCached"] is False
    # the same key from Python finds the same run
    assert app.trigger("echo", 3, idempotency_key="order-1").id == first["id"]


def test_a_key_whose_run_failed_is_released_over_http(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        first = trigger(client, "boom", 1, idempotencyKey="job-9")
        drain(app)
        assert run(client, first["id"])["status"] == "FAILED"
        second = trigger(client, "boom", 2, idempotencyKey="job-9")
        third = trigger(client, "boom", 3, idempotencyKey="job-9")
        assert run(client, second["id"])["idempotencyKey"] == "job-9"
    assert second["id"] != first["id"] and second["isCached"] is False
    assert third == {"id": second["id"], "isCached": True}


def test_one_idempotency_rule_from_python_and_http(live_server: LiveServer, app: Tether) -> None:
    """A key used from TypeScript and from Python finds the same run, and is freed by the same
    rule: a failed run's key makes a new run whichever channel comes next."""
    with live_server.client() as client:
        first = trigger(client, "boom", 1, idempotencyKey="job-10")
        drain(app)
        from_python = app.trigger("boom", 2, idempotency_key="job-10")
        from_http = trigger(client, "boom", 3, idempotencyKey="job-10",
                            idempotencyKeyOptions={"key": "job-10", "scope": "global"})
        drain(app)
        again = trigger(client, "boom", 4, idempotencyKey="job-10")
        from_python_again = app.trigger("boom", 5, idempotency_key="job-10")
        batch = client.post("/api/v2/tasks/batch", json={"items": [
            {"task": "boom", "payload": 6, "options": {"idempotencyKey": "job-10"}}]}).json()
    assert from_python.id != first["id"] and not from_python.is_cached
    assert from_http == {"id": from_python.id, "isCached": True}
    assert again["id"] not in (first["id"], from_python.id) and again["isCached"] is False
    assert from_python_again.id == again["id"] and from_python_again.is_cached
    assert [r["id"] for r in batch["runs"]] == [again["id"]]


def test_a_key_whose_run_completed_stays_cached(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        first = trigger(client, "echo", 1, idempotencyKey="done-1")
        drain(app)
        again = trigger(client, "echo", 2, idempotencyKey="done-1")
    assert again == {"id": first["id"], "isCached": True}


def test_a_retried_request_gets_the_first_answer(live_server: LiveServer, app: Tether) -> None:
    key = {"x-trigger-request-idempotency-key": "0b7c-retry"}
    body = {"payload": 1}
    with live_server.client() as client:
        first = client.post("/api/v1/tasks/echo/trigger", json=body, headers=key)
        again = client.post("/api/v1/tasks/echo/trigger", json=body, headers=key)
        fresh = client.post("/api/v1/tasks/echo/trigger", json=body,
                            headers={"x-trigger-request-idempotency-key": "other"})
        batch = client.post("/api/v3/batches", json={"runCount": 1}, headers=key)
        batch_again = client.post("/api/v3/batches", json={"runCount": 1}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers.get("x-tether-replayed") == "true"
    assert fresh.json()["id"] != first.json()["id"]
    assert batch.status_code == batch_again.status_code == 202
    assert batch_again.json() == batch.json()  # on another route the key is its own request
    assert len(live_server.tether.storage.list_runs(RunFilter())) == 2


def test_an_error_answer_is_not_stored(live_server: LiveServer, app: Tether) -> None:
    key = {"x-trigger-request-idempotency-key": "err-then-ok"}
    with live_server.client() as client:
        failed = client.post("/api/v1/tasks/echo/trigger",
                             json={"options": {"maxAttempts": 0}}, headers=key)
        fixed = client.post("/api/v1/tasks/echo/trigger", json={"payload": 1}, headers=key)
    assert failed.status_code == 422 and fixed.status_code == 200


# -- streamed batches (SDK >= 4.3.1) ------------------------------------------------------------------
def ndjson(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def send_items(client: httpx.Client, batch_id: str, body: bytes, status: int = 200) -> dict[str, Any]:
    response = client.post(f"/api/v3/batches/{batch_id}/items", content=body,
                           headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_streamed_batch_dedupes_resent_items(live_server: LiveServer, app: Tether) -> None:
    items = [{"index": i, "task": "echo", "payload": f"p{i}", "options": {"tags": [f"i{i}"]}}
             for i in range(3)]
    with live_server.client() as client:
        created = client.post("/api/v3/batches", json={"runCount": 3, "taskIdentifiers": ["echo"]})
        assert created.status_code == 202, created.text
        batch = created.json()
        assert batch == {"id": batch["id"], "runCount": 3, "isCached": False}
        assert batch["id"].startswith("batch_")
        part = send_items(client, batch["id"], ndjson(*items[:2]))
        pending = client.get(f"/api/v2/batches/{batch['id']}").json()
        whole = send_items(client, batch["id"], ndjson(*items))  # the SDK re-sends everything
        again = send_items(client, batch["id"], ndjson(*items))
        processing = client.get(f"/api/v2/batches/{batch['id']}").json()
        drain(app)
        done = client.get(f"/api/v2/batches/{batch['id']}").json()
        first_run = run(client, done["runs"][0])
    assert part == {"id": batch["id"], "itemsAccepted": 2, "itemsDeduplicated": 0, "sealed": False}
    assert whole == {"id": batch["id"], "itemsAccepted": 1, "itemsDeduplicated": 2, "sealed": True}
    assert again["itemsAccepted"] == 0 and again["itemsDeduplicated"] == 3
    assert pending["status"] == "PENDING" and len(pending["runs"]) == 2
    assert "completedAt" not in pending["processing"] and pending["processing"]["errors"] == []
    assert processing["status"] == "PROCESSING" and processing["runCount"] == 3
    assert done["status"] == "COMPLETED" and done["createdAt"].endswith("Z")
    assert [run_output(live_server, r) for r in done["runs"]] == ["p0", "p1", "p2"]
    assert first_run["batchId"] == batch["id"] and first_run["triggerFunction"] == "batchTrigger"
    assert first_run["tags"] == ["i0"]
    assert len(live_server.tether.storage.list_runs(RunFilter())) == 3


def run_output(server: LiveServer, run_id: str) -> Any:
    return json.loads(record(server, run_id).output or "null")


def test_a_batch_idempotency_key_returns_the_batch(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        first = client.post("/api/v3/batches", json={"runCount": 2, "idempotencyKey": "b-1"}).json()
        again = client.post("/api/v3/batches", json={"runCount": 2, "idempotencyKey": "b-1"}).json()
        info = client.get(f"/api/v2/batches/{first['id']}").json()
    assert again == {**first, "isCached": True}
    assert info["idempotencyKey"] == "b-1" and info["runs"] == []


def test_streamed_batch_errors(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        batch_id = client.post("/api/v3/batches", json={"runCount": 2}).json()["id"]
        beyond = send_items(client, batch_id, ndjson({"index": 2, "task": "echo"}), 422)
        not_json = send_items(client, batch_id, b'{"index": 0, "task": "echo"}\n{oops\n', 400)
        no_task = send_items(client, batch_id, ndjson({"index": 0}), 422)
        unknown_task = send_items(client, batch_id, ndjson({"index": 1, "task": "nope"}), 404)
        bad_payload = send_items(client, batch_id, ndjson(
            {"index": 0, "task": "echo", "payload": 5, "options": {"payloadType": "text/plain"}}),
            422)
        unknown_batch = send_items(client, "batch_nope", ndjson({"index": 0, "task": "echo"}), 404)
        unknown_get = client.get("/api/v2/batches/batch_nope")
        too_many = client.post("/api/v3/batches", json={"runCount": 1001})
        zero = client.post("/api/v3/batches", json={"runCount": 0})
        unknown_declared = client.post("/api/v3/batches",
                                       json={"runCount": 1, "taskIdentifiers": ["nope"]})
    assert "out of range" in beyond["error"] and "runCount 2" in beyond["error"]
    assert not_json["error"] == ("line 2 of the NDJSON body is not valid JSON: Expecting property "
                                 "name enclosed in double quotes at column 2")
    assert "line 1" in no_task["error"] and "task" in no_task["error"]
    assert unknown_task["error"].startswith("item 1: Task not found")
    assert bad_payload["error"].startswith("item 0: ")
    assert "no batch with id 'batch_nope'" in unknown_batch["error"]
    assert "no batch" in error_of(unknown_get, 404)
    assert "runCount" in error_of(too_many, 422) and "runCount" in error_of(zero, 422)
    assert error_of(unknown_declared, 404).startswith("Task not found")
    assert live_server.tether.storage.list_runs(RunFilter()) == []


# -- one-request batches (SDK 4.0 to 4.3.0) -----------------------------------------------------------
def test_a_one_request_batch_and_its_status(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        answer = client.post("/api/v2/tasks/batch", json={"items": [
            {"task": "echo", "payload": "a"},
            {"task": "boom", "payload": "b"},
            {"task": "echo", "payload": "c", "options": {"idempotencyKey": "c-key"}}]})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        before = client.get(f"/api/v2/batches/{body['id']}").json()
        drain(app)
        after = client.get(f"/api/v2/batches/{body['id']}").json()
    assert body["runCount"] == 3 and body["isCached"] is False
    assert [r["taskIdentifier"] for r in body["runs"]] == ["echo", "boom", "echo"]
    assert body["runs"][2]["idempotencyKey"] == "c-key" and "idempotencyKey" not in body["runs"][0]
    assert before["runs"] == [r["id"] for r in body["runs"]]
    assert before["status"] == "PROCESSING" and before["processing"]["completedAt"].endswith("Z")
    assert after["status"] == "PARTIAL_FAILED"


def test_a_one_request_batch_is_all_or_nothing(live_server: LiveServer, app: Tether) -> None:
    with live_server.client() as client:
        unknown = client.post("/api/v2/tasks/batch", json={"items": [
            {"task": "echo"}, {"task": "nope"}]})
        empty = client.post("/api/v2/tasks/batch", json={"items": []})
    assert error_of(unknown, 404).startswith("item 1: Task not found")
    assert "items" in error_of(empty, 422)
    assert live_server.tether.storage.list_runs(RunFilter()) == []
