"""What a first `curl` meets: `HEAD` answers as `GET` does, without the body (a monitor's
`HEAD /` is not a 405), and a body that is not JSON is a 400 saying where it stops being JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the same code on both backends


def same_answer(client: httpx.Client, path: str) -> httpx.Response:
    """HEAD `path`, checked against GET: the same status and headers, and no body."""
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code, (path, head.status_code, head.text)
    assert head.content == b""
    for name in ("content-type", "location", "content-length"):
        if name == "content-length" and name not in got.headers:
            continue
        assert head.headers.get(name) == got.headers.get(name), (path, name)
    return head


def test_head_answers_like_get_on_pages_and_api_routes(live_server: LiveServer) -> None:
    with live_server.client("") as anonymous:
        assert same_answer(anonymous, "/login").status_code == 200
        assert same_answer(anonymous, "/").status_code == 303  # to the login form, as GET
        assert same_answer(anonymous, "/api/v1/timezones").status_code == 200
        assert same_answer(anonymous, "/api/v1/runs").status_code == 401
    with live_server.client() as client:
        assert same_answer(client, "/api/v1/runs").status_code == 200
        assert same_answer(client, "/api/v3/runs/run_nope").status_code == 404
        assert same_answer(client, "/openapi.json").status_code == 200
        assert client.head("/api/v1/tasks/echo/trigger").status_code == 405  # POST only


def test_head_of_the_dashboard_in_dev_mode(dev_url: str) -> None:
    with httpx.Client(base_url=dev_url, timeout=10) as client:
        for path in ("/", "/failed", "/tasks", "/queues", "/schedules", "/tokens"):
            head = same_answer(client, path)
            assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
        live = client.head("/live/runs")  # a stream: the headers, then the answer ends
        assert live.status_code == 200 and live.content == b""


@pytest.mark.parametrize(("body", "where"), [
    (b'{"payload": 1,}', "line 1 column 15"),
    (b'{"payload": "x"', "line 1 column 16"),
    (b'{\n  "payload": nope\n}', "line 2 column 14"),
    (b"payload=1", "line 1 column 1"),
])
def test_a_body_that_is_not_json_is_a_400_saying_where(live_server: LiveServer, body: bytes,
                                                       where: str) -> None:
    with live_server.client() as client:
        answers = [client.post(path, content=body, headers={"Content-Type": "application/json"})
                   for path in ("/api/v1/tasks/echo/trigger", "/api/v1/waitpoints/tokens")]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]
        assert message.startswith("request body is not valid JSON: "), message
        assert message.endswith(f" at {where}"), message
    assert live_server.tether.tokens.list() == []
