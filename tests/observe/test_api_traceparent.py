"""A trigger over the HTTP API (a real server on 127.0.0.1, both backends) with a `traceparent`
header, as the Trigger.dev SDK sends it, joins that trace: stored as it came when the server
does not trace, under the server's trigger span when it does; an invalid header is ignored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trace_tree import reset_tracer_provider

from tether import Tether, Worker
from tether.server import ServerConfig
from tether.server.run import listen_socket, uvicorn_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass
class Served:
    url: str
    key: str
    app: Tether


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    app = Tether(db_url)

    @app.task(id="hello")
    async def hello(payload: Any) -> str:
        return f"hello {payload}"

    app.storage.migrate()
    key = app.keys.create("tests").secret
    assert key is not None
    sock = listen_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn_server(app, sock, ServerConfig(public_url=url), "warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield Served(url, key, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.close()


def trigger(served: Served, headers: dict[str, str]) -> str:
    response = httpx.post(f"{served.url}/api/v1/tasks/hello/trigger", json={"payload": "you"},
                          headers={"Authorization": f"Bearer {served.key}", **headers}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def run_all(app: Tether) -> None:
    assert asyncio.run(Worker(app).run_until_idle()) == 1


def test_the_run_joins_the_request_s_trace(served: Served,
                                           exporter: InMemorySpanExporter) -> None:
    provider = trace.get_tracer_provider()
    reset_tracer_provider()  # the server does not trace: the header is stored as it came
    run_id = trigger(served, {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    stored = served.app.storage.get_run(run_id)
    assert stored is not None and stored.trace_context == f"{TRACEPARENT}\nvendor=abc"
    # readable through every channel: Python, the API (the CLI and dashboard: test_otlp_worker)
    assert served.app.runs.retrieve(run_id).trace_id == TRACE_ID
    shown = httpx.get(f"{served.url}/api/v3/runs/{run_id}", timeout=10,
                      headers={"Authorization": f"Bearer {served.key}"})
    assert shown.json()["traceContext"] == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}

    trace.set_tracer_provider(provider)  # the worker traces
    run_all(served.app)
    [segment] = exporter.get_finished_spans()
    assert segment.name == "run hello"
    assert format(segment.context.trace_id, "032x") == TRACE_ID
    assert segment.parent is not None and format(segment.parent.span_id, "016x") == PARENT_ID
    assert segment.context.trace_state.to_header() == "vendor=abc"


def test_a_tracing_server_makes_the_trigger_span_under_the_request_s(
        served: Served, exporter: InMemorySpanExporter) -> None:
    run_id = trigger(served, {"traceparent": TRACEPARENT})
    run_all(served.app)
    finished = exporter.get_finished_spans()
    spans = {s.name: s for s in finished}
    producer, segment = spans["trigger hello"], spans["run hello"]
    assert producer.kind == trace.SpanKind.PRODUCER
    assert producer.attributes is not None and producer.attributes["tether.run_id"] == run_id
    assert {format(s.context.trace_id, "032x") for s in finished} == {TRACE_ID}
    # the trigger span is the request's child, or its server span's (FastAPI traces requests
    # itself once a provider is installed)
    by_id = {s.context.span_id: s for s in finished}
    chain, at = [], producer
    while at.parent is not None and at.parent.span_id in by_id:
        at = by_id[at.parent.span_id]
        chain.append(at.name)
    assert at.parent is not None and format(at.parent.span_id, "016x") == PARENT_ID, chain
    assert segment.parent is not None and segment.parent.span_id == producer.context.span_id


@pytest.mark.parametrize("header", [
    "not a traceparent", f"00-{'0' * 32}-{PARENT_ID}-01", f"ff-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01", TRACEPARENT + "-extra"])
def test_an_invalid_traceparent_is_ignored(served: Served, header: str) -> None:
    run_id = trigger(served, {"traceparent": header})
    stored = served.app.storage.get_run(run_id)
    assert stored is not None and stored.trace_context is None


def test_a_batch_joins_the_request_s_trace(served: Served,
                                           exporter: InMemorySpanExporter) -> None:
    response = httpx.post(f"{served.url}/api/v2/tasks/batch",
                          json={"items": [{"task": "hello", "payload": n} for n in range(3)]},
                          headers={"Authorization": f"Bearer {served.key}",
                                   "traceparent": TRACEPARENT}, timeout=10)
    assert response.status_code == 202, response.text
    ids = [run["id"] for run in response.json()["runs"]]
    [producer] = [s for s in exporter.get_finished_spans() if s.name == "trigger hello"]
    assert producer.attributes is not None
    assert producer.attributes["messaging.batch.message_count"] == 3
    assert format(producer.context.trace_id, "032x") == TRACE_ID
    for record in served.app.storage.get_runs(ids):
        assert record.trace_context is not None
        assert record.trace_context.split("-")[2] == format(producer.context.span_id, "016x")


def test_a_streamed_batch_joins_the_request_s_trace(served: Served) -> None:
    """The SDK's batches (`POST /api/v3/batches`, then its items as NDJSON): the items' runs
    store the header of the request that sent them (the server does not trace here)."""
    headers = {"Authorization": f"Bearer {served.key}"}
    created = httpx.post(f"{served.url}/api/v3/batches", json={"runCount": 2}, headers=headers,
                         timeout=10)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    lines = b'{"index":0,"task":"hello","payload":1}\n{"index":1,"task":"hello","payload":2}\n'
    sent = httpx.post(f"{served.url}/api/v3/batches/{batch_id}/items", content=lines,
                      headers={**headers, "Content-Type": "application/x-ndjson",
                               "traceparent": TRACEPARENT}, timeout=10)
    assert sent.status_code == 200, sent.text
    assert sent.json()["itemsAccepted"] == 2
    records = served.app.storage.get_runs(served.app.storage.batch_run_ids(batch_id))
    assert [r.trace_context for r in records] == [TRACEPARENT, TRACEPARENT]
