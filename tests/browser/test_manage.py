"""Tokens, queues and schedules pages, and the server's shutdown with pages open."""

from __future__ import annotations

from typing import Any

from browser_support import Dash, wait_until

from tether import RunStatus


def waiting_token(dash: Dash, run_id: str) -> str:
    dash.wait_status(run_id, RunStatus.WAITING)
    return wait_until(lambda: next((t.id for t in dash.tether.tokens.list(status="WAITING")
                                    if t.run_id == run_id), None), 10, "no waiting token")


def test_complete_a_token_from_the_tokens_page(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("approval", {"doc": 1})
    token_id = waiting_token(dash, run.id)
    page.goto(dash.url + "/tokens")
    form = page.locator(f"#token-{token_id} form")
    form.locator("textarea").fill('{"approved": tru}')
    form.locator("button").click()
    error = page.locator(f"#token-{token_id} .field-error")
    assert "not valid JSON" in error.inner_text() and "line 1, column" in error.inner_text()
    assert dash.run(run.id).status == RunStatus.WAITING

    form = page.locator(f"#token-{token_id} form")
    assert form.locator("textarea").input_value() == '{"approved": tru}'  # kept for fixing
    form.locator("textarea").fill('{"approved": true, "by": "ana"}')
    form.locator("button").click()
    page.locator(".flash-ok", has_text=f"Token {token_id} completed").wait_for()
    done = dash.wait_status(run.id, RunStatus.COMPLETED)
    assert done.output == {"decision": {"approved": True, "by": "ana"}}
    assert page.locator(f"#token-{token_id}").count() == 0


def test_complete_a_token_from_the_run_page_which_then_shows_the_run_complete(
        logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("approval", {"doc": 2})
    waiting_token(dash, run.id)
    page.goto(f"{dash.url}/runs/{run.id}")
    page.fill(".waiting-token textarea", '"yes"')
    page.click(".waiting-token button")
    page.locator(".run-head .badge.st-completed").wait_for()
    assert dash.run(run.id).output == {"decision": "yes"}


def test_pause_and_resume_a_queue(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    dash.tether.trigger("slow", {})
    page.goto(dash.url + "/queues")
    lane = page.locator("tr[data-queue='slow-lane']")
    lane.locator("button:has-text('Pause')").click()
    page.locator("tr[data-queue='slow-lane'] .badge.st-paused").wait_for()
    assert {q.name: q.paused for q in dash.tether.storage.list_queues()}["slow-lane"]

    queued = dash.tether.trigger("slow", {})
    page.reload()
    cells = page.locator("tr[data-queue='slow-lane'] td").all_inner_texts()
    assert cells[1] == "1"  # depth: the new run waits while the queue is paused
    assert dash.run(queued.id).status == RunStatus.QUEUED

    page.locator("tr[data-queue='slow-lane'] button:has-text('Resume')").click()
    page.locator("tr[data-queue='slow-lane'] .badge.st-active").wait_for()
    assert not {q.name: q.paused for q in dash.tether.storage.list_queues()}["slow-lane"]


def test_tasks_and_schedules_pages(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    schedule = dash.tether.schedules.create(task="quick", cron="0 6 * * *", timezone="Europe/Berlin")
    page.goto(dash.url + "/tasks")
    text = page.inner_text("table")
    assert "pipeline" in text and "pipelines" in text and "0 6 * * *" in text
    page.goto(dash.url + "/schedules")
    assert page.locator("td", has_text="Europe/Berlin").count() == 1
    assert page.locator("td.small div").count() == 3  # the next three slots
    page.click("button:has-text('Deactivate')")
    page.locator(".flash-ok").wait_for()
    assert not dash.tether.schedules.retrieve(schedule.id).active


def test_the_server_stops_promptly_with_live_pages_open(logged_in: Any, dash: Dash) -> None:
    page = logged_in
    run = dash.tether.trigger("quick", {"n": 1}, delay="1h")
    second = page.context.new_page()
    second.goto(f"{dash.url}/runs/{run.id}")
    for p in (page, second):
        p.wait_for_selector(".live.on")
    took = dash.stop_server()
    assert took < 3.0, f"the server took {took:.1f}s to stop with two event streams open"
