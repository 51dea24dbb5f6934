"""The runs list and a run's page, live while runs change in the database (written by a worker
with its own connection, as another process would)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from browser_support import Dash, wait_until

from tether import RunStatus
from tether.server.dashboard import live


def row(page: Any, run_id: str) -> Any:
    return page.locator(f"#runs-rows tr:has(a[href='/runs/{run_id}'])")


def test_the_runs_list_shows_new_runs_and_status_changes_live(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    page.wait_for_selector(".live.on")  # the event stream is open
    delayed = dash.tether.trigger("quick", {"n": 1}, delay="1h", tags=["browser"])
    started = time.monotonic()
    row(page, delayed.id).wait_for()
    appeared = time.monotonic() - started
    assert "DELAYED" in row(page, delayed.id).inner_text()

    dash.tether.runs.cancel(delayed.id)
    started = time.monotonic()
    row(page, delayed.id).locator(".badge.st-canceled").wait_for()
    changed = time.monotonic() - started
    print(f"new run shown after {appeared * 1000:.0f} ms, status change after {changed * 1000:.0f} ms")
    assert appeared < 2.0 and changed < 2.0  # the target is 500 ms; leave room for slow machines

    done = dash.tether.trigger("quick", {"n": 2})
    row(page, done.id).locator(".badge.st-completed").wait_for()
    assert page.url == dash.url + "/"  # no reload happened


def test_filters_and_paging(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    ids = [dash.tether.trigger("quick", {"n": i}, delay="1h", tags=[f"n:{i % 2}"]).id
           for i in range(55)]
    failed = dash.tether.trigger("broken", {"account": 7})
    dash.wait_status(failed.id, RunStatus.FAILED)

    page.goto(dash.url + "/?status=FAILED")
    assert page.locator("#runs-rows tr").count() == 1
    page.goto(dash.url + "/?tag=n:1&task=quick")
    assert page.locator("#runs-rows tr").count() == 27
    page.goto(dash.url + "/?range=1h&task=quick")
    assert page.locator("#runs-rows tr").count() == 50
    page.click("text=Older →")
    assert page.locator("#runs-rows tr").count() == 5
    assert row(page, ids[0]).count() == 1  # the oldest, on the second page
    page.goto(dash.url + "/?range=custom&before=2001-01-01T00:00")
    assert "No runs match" in page.inner_text("#runs-rows")


def test_a_run_page_shows_its_steps_wait_and_child_as_it_runs(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("pipeline", {"source": "orders"}, tags=["nightly"])
    page.goto(f"{dash.url}/runs/{run.id}")
    page.wait_for_selector(".live.on")
    page.locator(".run-head .badge.st-completed").wait_for()  # live: no reload needed

    timeline = page.inner_text(".tl")
    for name in ("attempt 1", "extract", "transform", "sleep 300ms", "trigger and wait: quick",
                 "load"):
        assert name in timeline, name
    child = dash.tether.runs.children(run.id)[0]
    link = page.locator(f".tl a[href='/runs/{child.id}']")
    assert link.inner_text() == "quick"
    assert page.locator(".tl .bar").count() >= 8
    assert '"source": "orders"' in page.inner_text(".io")
    assert '"total": 80' in page.inner_text(".io")
    assert "extracted 40 rows" in page.inner_text(".logs")

    link.click()
    page.wait_for_url(f"{dash.url}/runs/{child.id}")
    assert page.locator(".related a", has_text="pipeline").count() >= 1


def test_cancel_then_replay_from_the_run_page(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("quick", {"n": 21}, delay="1h", tags=["later"])
    page.goto(f"{dash.url}/runs/{run.id}")
    page.click("button:has-text('Cancel')")
    page.locator(".flash-ok").wait_for()
    assert dash.run(run.id).status == RunStatus.CANCELED
    assert page.locator(".run-head .badge.st-canceled").count() == 1
    assert page.locator("button:has-text('Cancel')").count() == 0

    page.click("button:has-text('Replay')")
    page.wait_for_url(re.compile(r".*/runs/run_\w+$"))
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != run.id
    replayed = dash.wait_status(new_id, RunStatus.COMPLETED)
    assert replayed.payload == {"n": 21} and replayed.tags == ["later"]
    page.locator(".run-head .badge.st-completed").wait_for()


def test_retry_a_failed_run_from_its_page(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("broken", {"account": 3})
    dash.wait_status(run.id, RunStatus.FAILED)
    page.goto(f"{dash.url}/runs/{run.id}")
    assert "account 3 is locked" in page.inner_text(".card.error")
    page.click("button:has-text('Retry from the failed step')")
    page.locator(".flash-ok").wait_for()
    wait_until(lambda: dash.run(run.id).attempts == 2, 10, "the retry never ran")


def test_the_failed_view_replays_and_retries_in_bulk(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    runs = [dash.tether.trigger("broken", {"account": i}) for i in range(3)]
    for run in runs:
        dash.wait_status(run.id, RunStatus.FAILED)
    page.goto(dash.url + "/failed")
    assert page.locator("#runs-rows tr").count() == 3
    assert page.locator("button:has-text('Replay selected')").is_disabled()
    page.check(f"input[value='{runs[0].id}']")
    page.check(f"input[value='{runs[1].id}']")
    page.click("button:has-text('Retry selected')")
    page.locator(".flash-ok", has_text="Retried 2 runs").wait_for()
    for run in runs[:2]:
        wait_until(lambda run=run: dash.run(run.id).attempts == 2, 10, "not retried")
    assert dash.run(runs[2].id).attempts == 1

    page.check("[data-select-all]")
    page.click("button:has-text('Replay selected')")
    page.locator(".flash-ok", has_text="Replayed 3 runs").wait_for()
    assert len(dash.tether.runs.list(task="broken", limit=100)) == 6


def test_streams_that_end_are_reopened_and_miss_nothing(logged_in: Any, dash: Dash,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "STREAM_SECONDS", 0.4)  # the server is in this process
    page = logged_in
    page.wait_for_selector(".live.on")
    time.sleep(1.5)  # a few streams ended and the browser opened new ones (Last-Event-ID)
    run = dash.tether.trigger("quick", {"n": 5})
    row(page, run.id).locator(".badge.st-completed").wait_for()
