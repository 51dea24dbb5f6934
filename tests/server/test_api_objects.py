"""Large values over real HTTP, on both backends and with a directory or an S3 bucket (moto) as
the object store: a 2 MB payload, packet and output are kept in the store (their rows are
small) and read back unchanged by the API's run retrieve, the packet download and the dashboard,
which shows the size and a download link instead of the JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveServer, serve
from objects_support import STORES, store_url
from tether import Tether, Worker
from tether.objects import is_reference

BIG = 2_000_000


@pytest.fixture(params=STORES)
def stored_server(request: pytest.FixtureRequest, db_url: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, Tether]]:
    """A server and a worker app with `echo` (returns its payload), sharing an object store."""
    with store_url(str(request.param), tmp_path, monkeypatch) as objects:
        tether = Tether(db_url, object_store=objects)
        tether.storage.migrate()
        key = tether.keys.create("tests")
        assert key.secret is not None
        app = Tether(db_url, object_store=objects)

        @app.task(id="echo")
        async def echo(payload: Any) -> Any:
            return payload

        now = app.clock.now()
        app.storage.register_tasks([t.record(now) for t in app.tasks.values()],
                                   [t.queue_record() for t in app.tasks.values()])
        urls = serve(tether)
        try:
            yield LiveServer(url=next(urls), key=key.secret, tether=tether), app
        finally:
            urls.close()
            app.close()
            tether.close()


def test_large_values_read_back_through_the_api_and_the_dashboard(
        stored_server: tuple[LiveServer, Tether]) -> None:
    server, app = stored_server
    value = {"blob": "z" * BIG, "n": 1}
    with server.client() as client:
        created = client.post("/api/v1/tasks/echo/trigger", json={"payload": value})
        assert created.status_code == 200, created.text
        run_id = created.json()["id"]
        asyncio.run(Worker(app).run_until_idle())
        row = server.tether.storage.get_run(run_id)
        assert row is not None and row.status == "COMPLETED"
        assert is_reference(row.payload) and is_reference(row.output)
        assert len(row.payload) < 400 and len(row.output or "") < 400
        body = client.get(f"/api/v3/runs/{run_id}").json()
        assert body["payload"] == value and body["output"] == value
        page = client.get(f"/runs/{run_id}")
        assert page.status_code == 200 and "z" * 1000 not in page.text
        assert "2.0 MB of JSON" in page.text and f"/runs/{run_id}/values/payload" in page.text
        download = client.get(f"/runs/{run_id}/values/output")
        assert download.status_code == 200 and json.loads(download.content) == value
        assert client.get("/").status_code == 200  # the runs list does not read the values


def test_large_packets_are_kept_in_the_store_and_downloaded_unchanged(
        stored_server: tuple[LiveServer, Tether]) -> None:
    server, app = stored_server
    packet = json.dumps({"json": {"blob": "p" * BIG}}).encode()
    with server.client() as client:
        url = client.put("/api/v2/packets/big/payload.json").json()["presignedUrl"]
        with httpx.Client(timeout=30) as anonymous:
            assert anonymous.put(url, content=packet).status_code == 200
        stored = server.tether.storage.get_packet("big/payload.json")
        assert stored is not None and len(stored) < 400  # the row keeps a reference
        assert client.get("/api/v1/packets/big/payload.json").content == packet
        created = client.post("/api/v1/tasks/echo/trigger", json={
            "payload": "big/payload.json", "options": {"payloadType": "application/store"}})
        assert created.status_code == 200, created.text
        asyncio.run(Worker(app).run_until_idle())
        body = client.get(f"/api/v3/runs/{created.json()['id']}").json()
        assert body["output"] == {"blob": "p" * BIG}


def test_a_packet_that_looks_like_a_reference_is_kept_as_it_is(
        stored_server: tuple[LiveServer, Tether]) -> None:
    server, _ = stored_server
    packet = b'{"$tether_object":"obj_x","store":"file:///nowhere","size":1,"sha256":"00"}'
    with server.client() as client:
        url = client.put("/api/v2/packets/fake/payload.json").json()["presignedUrl"]
        with httpx.Client(timeout=30) as anonymous:
            assert anonymous.put(url, content=packet).status_code == 200
        assert client.get("/api/v1/packets/fake/payload.json").content == packet
