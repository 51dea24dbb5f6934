"""Every page is behind the API keys; every state-changing POST needs the session's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from browser_support import Dash, login, serve

from tether import RunStatus
from tether.server import ServerConfig


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextmanager
def http_login(dash: Dash) -> Iterator[httpx.Client]:
    """A client with a dashboard session, logged in through the form like a browser."""
    with dash.http() as client:
        form = client.get("/login")
        answer = client.post("/login", data={"key": dash.key, "next": "/",
                                             "csrf_token": csrf_of(form.text)})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        yield client


def test_pages_redirect_to_login_and_a_key_opens_them(page: Any, dash: Dash) -> None:
    page.goto(dash.url + "/queues?x=1")
    assert page.url == dash.url + "/login?next=/queues%3Fx%3D1"
    page.fill("input[name=key]", "tk_not-a-key")
    page.click("button[type=submit]")
    assert "unknown or was revoked" in page.inner_text(".flash-error")

    page.fill("input[name=key]", dash.key)
    page.click("button[type=submit]")
    page.wait_for_url(dash.url + "/queues?x=1")
    assert page.inner_text("h1") == "Queues"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["tether_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"

    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/login$"))
    page.goto(dash.url + "/")
    assert "/login" in page.url


def test_a_revoked_key_ends_its_sessions(page: Any, dash: Dash) -> None:
    login(page, dash)
    key_id = dash.tether.keys.list()[0].id
    dash.tether.keys.revoke(key_id)
    page.goto(dash.url + "/tokens")
    assert "/login?next=/tokens" in page.url


def test_live_streams_and_posts_need_a_session(dash: Dash) -> None:
    with dash.http() as client:
        assert client.get("/live/runs").status_code == 401
        answer = client.get("/", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/"
        bearer = client.get("/tasks", headers={"Authorization": f"Bearer {dash.key}"})
        assert bearer.status_code == 200 and "Tasks" in bearer.text


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(dash: Dash) -> None:
    run = dash.tether.trigger("quick", {"n": 1}, delay="1h")
    with http_login(dash) as client:
        token = csrf_of(client.get(f"/runs/{run.id}").text)
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": token + "x"}):
            refused = client.post(f"/runs/{run.id}/cancel", data=data)
            assert refused.status_code == 403, data
            assert "CSRF" in refused.text
            assert client.post("/queues/pause", data={"name": "quick", **data}).status_code == 403
        assert dash.run(run.id).status == RunStatus.DELAYED
        assert not any(q.paused for q in dash.tether.storage.list_queues())

        # a token from another session does not work either
        with http_login(dash) as other:
            foreign = csrf_of(other.get("/tokens").text)
        assert client.post(f"/runs/{run.id}/cancel", data={"csrf_token": foreign}).status_code == 403

        done = client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
        assert done.status_code == 303
        assert dash.run(run.id).status == RunStatus.CANCELED


def test_dev_mode_opens_pages_from_localhost_without_a_login_but_checks_csrf(
        dash: Dash) -> None:
    server = serve(dash.tether, ServerConfig(dev=True))
    base = next(server)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            page = client.get("/queues")
            assert page.status_code == 200 and "Queues" in page.text
            assert client.get("/login", follow_redirects=False).status_code == 303
            assert client.post("/queues/pause", data={"name": "quick"}).status_code == 403
            paused = client.post("/queues/pause", data={"name": "quick",
                                                        "csrf_token": csrf_of(page.text)})
            assert paused.status_code == 303
        assert {q.name: q.paused for q in dash.tether.storage.list_queues()}["quick"]
    finally:
        server.close()
