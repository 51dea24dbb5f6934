"""The queue's keys page in a real browser: paused keys with a Resume button, and the keys with
the most runs ready."""

from __future__ import annotations

import time
from typing import Any

from browser_support import Dash


def test_the_queue_page_shows_paused_keys_and_depth_and_resumes_a_key(logged_in: Any,
                                                                       dash: Dash) -> None:
    page = logged_in
    tether = dash.tether
    tether.trigger("slow", {})  # the worker declared the queue; keep its runs QUEUED:
    assert tether.storage.set_queue_paused("slow-lane", True, time.time())
    for key in ("acme", "globex", "globex"):
        tether.trigger("slow", {}, concurrency_key=key)
    tether.queues.pause_key("slow-lane", "globex", "10m", reason="their API said 429")

    page.goto(dash.url + "/queues")
    page.locator("tr[data-queue='slow-lane'] a.keys-link").click()
    page.wait_for_url(dash.url + "/queues/keys?name=slow-lane")
    assert "Concurrency 1 per key" in page.locator(".page-head").inner_text()
    paused = page.locator("table.paused-keys tr[data-key='globex'] td").all_inner_texts()
    assert paused[0] == "globex" and paused[2] == "their API said 429"
    depth = [page.locator(f"table.key-depths tr[data-key='{key}'] td").all_inner_texts()
             for key in ("globex", "acme")]
    assert depth == [["globex", "2", "0"], ["acme", "1", "0"]]

    page.locator("table.paused-keys tr[data-key='globex'] button:has-text('Resume')").click()
    page.locator(".flash-ok", has_text="Key globex of queue slow-lane resumed").wait_for()
    assert page.locator("table.paused-keys tr[data-key='globex']").count() == 0
    assert tether.queues.paused_keys() == []

    page.goto(dash.url + "/queues/keys?name=nope")
    assert "No queue named 'nope'" in page.content()


def test_the_queue_page_shows_the_rate_limit(logged_in: Any, dash: Dash) -> None:
    from tether import Queue, RateLimit
    from tether.task import queue_record

    queue = Queue("rated", concurrency=2, total_concurrency=5,
                  rate_limit=RateLimit(100, "1m", burst=5, key="concurrency_key"))
    dash.tether.storage.ensure_queues([queue_record(queue)], time.time())
    page = logged_in
    page.goto(dash.url + "/queues/keys?name=rated")
    head = page.locator(".page-head").inner_text()
    assert "Concurrency 2 per key" in head and "5 in all keys" in head
    assert page.locator(".rate-limit").inner_text() == "100 per 60 s, burst 5, per concurrency key"
