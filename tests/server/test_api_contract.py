"""The API as its OpenAPI document describes it, against a live server: every route refuses a
request without a valid API key (except the routes that authenticate by a signed URL), and a
schemathesis fuzz pass over every operation finds no server error."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

# Routes authenticated by a signature in their URL instead of an API key: a token's callback
# URL and the target of a payload's presignedUrl.
SIGNED = {
    ("POST", "/api/v1/waitpoints/tokens/{token_id}/callback/{signature}"),
    ("PUT", "/api/v1/packet-uploads/{path}"),
}
# Public: the SDK's `schedules.timezones()` sends no key.
PUBLIC = {("GET", "/api/v1/timezones")}
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}  # per operation


def operations(live_server: LiveServer) -> list[tuple[str, str, dict[str, Any]]]:
    document = httpx.get(f"{live_server.url}/openapi.json", timeout=10,
                         headers={"Authorization": f"Bearer {live_server.key}"}).json()
    return [(method.upper(), path, operation) for path, methods in document["paths"].items()
            for method, operation in methods.items()]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


# -- (a) authentication on every route ------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "tk_wrong"])
def test_every_route_answers_401_without_a_valid_key(live_server: LiveServer, key: str) -> None:
    found = operations(live_server)
    assert len(found) > 20  # the document lists the API, not an empty app
    public = set()
    with live_server.client(key) as client:
        for method, path, _ in found:
            response = client.request(method, concrete(path))
            refused = response.status_code == 401 and "API key" in response.json()["error"]
            if not refused:
                public.add((method, path))
    assert public == SIGNED | PUBLIC, "routes that did not ask for an API key"


def test_routes_without_a_key_are_documented_and_signed_ones_refuse_a_bad_signature(
        live_server: LiveServer) -> None:
    documented = {(m, p) for m, p, op in operations(live_server) if op.get("security") == []}
    assert {("POST", "/api/v1/waitpoints/tokens/{token_id}/callback/{signature}"),
            *PUBLIC} <= documented
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        for method, path in SIGNED:
            response = client.request(method, concrete(path), content=b"{}",
                                      headers={"content-type": "application/json"})
            assert response.status_code in (401, 403), (method, path, response.text)


# -- (b) fuzzing ----------------------------------------------------------------------------------
@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """A batch's items: the schema describes one line; a list becomes one line per item."""
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def arrange(live_server: LiveServer) -> None:
    """Something for the fuzzer to find: a task with a run, a token, a schedule, a queue."""
    tether = live_server.tether

    @tether.task
    def echo(payload: Any) -> Any:
        return payload

    now = tether.clock.now()
    tether.storage.register_tasks([echo.record(now)], [echo.queue_record()])
    echo.trigger({"hello": "world"})
    tether.tokens.create(tags=["fuzz"])
    tether.schedules.create(task="echo", cron="0 * * * *", deduplication_key="fuzz")


def fuzz_operation(operation: Any, mode: GenerationMode, call: Any) -> None:
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        call(case)

    try:
        run()
    except Unsatisfiable:  # schemathesis found no invalid input to send it
        if mode is GenerationMode.POSITIVE:
            raise


def modes(operation: Any) -> list[GenerationMode]:
    """Invalid input too, unless the operation takes nothing but path parameters (schemathesis
    keeps paths valid, so it would search for invalid cases in vain)."""
    others = [p for p in operation.iter_parameters() if p.location != ParameterLocation.PATH]
    if others or len(operation.body):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


@pytest.mark.parametrize("backend", ["sqlite"])  # one backend: the routes are the same code
def test_fuzzing_every_operation_finds_no_server_error(live_server: LiveServer) -> None:
    arrange(live_server)
    headers = {"Authorization": f"Bearer {live_server.key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json", headers=headers)
    session = requests.Session()  # one connection, not one per example
    errors: dict[str, str] = {}
    statuses: Counter[int] = Counter()

    def call(case: Case) -> None:
        response = case.call(base_url=live_server.url, session=session, headers=headers, timeout=10)
        statuses[response.status_code] += 1
        label = case.operation.label
        if response.status_code >= 500 and label not in errors:
            errors[label] = (f"{response.status_code} {response.text[:300]}\n  "
                             f"{case.as_curl_command(headers=headers)}")
        elif response.status_code < 300:
            try:  # a success answers what the document says it does
                case.operation.validate_response(response)
            except (FailureGroup, AssertionError) as exc:
                errors.setdefault(f"{label} (response shape)", str(exc)[:500])

    fuzzed = 0
    with session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            for mode in modes(result.ok()):
                fuzz_operation(result.ok(), mode, call)
            fuzzed += 1
    assert fuzzed == len(operations(live_server))
    assert sum(n for status, n in statuses.items() if status < 300) > 50  # the key was accepted
    assert not errors, "failures:\n" + "\n".join(f"{k}: {v}" for k, v in errors.items())
