"""The alert detector on each backend, in process (a ManualClock, real storage): each failure
for good becomes one `tether.alert` run per webhook, once across restarts of the detector; the
deliveries' own failures and runs from before alerts were on are not alerted about; a hand-made
`tether.alert` payload is not sent. Queue backlogs: once per episode, kept across restarts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_helpers import drain

from tether import ManualClock, Retry, RunStatus, Tether, Worker
from tether.alerts import events
from tether.alerts.config import AlertConfig, split_urls
from tether.alerts.delivery import ALERT_QUEUE, ALERT_TASK, register
from tether.alerts.detector import Detector
from tether.errors import ConfigurationError
from tether.storage.records import WorkerRecord

SECRET = "engine-alert-secret-0123"
HOOKS = ("http://127.0.0.1:9/a-token", "http://127.0.0.1:9/b-token")


@pytest.fixture
def config(app: Tether) -> AlertConfig:
    found = AlertConfig(HOOKS, SECRET, queue_wait=60, public_url="http://tether.test")
    register(app, found)
    return found


def alert_runs(app: Tether) -> list[dict[str, Any]]:
    runs = app.runs.list(task=ALERT_TASK, limit=100)
    return [r.payload for r in sorted(runs, key=lambda r: r.id)]


def fail_one(app: Tether, clock: ManualClock, payload: Any) -> str:
    if "breaks" not in app.tasks:
        @app.task(id="breaks", retry=Retry(max_attempts=1))
        def breaks(payload: Any) -> None:
            raise ValueError(f"broken by {payload}")

    run_id = app.trigger("breaks", payload).id
    clock.advance(1)
    drain(Worker(app, queues=["breaks"]))
    assert app.runs.retrieve(run_id).status == RunStatus.FAILED
    return run_id


def test_each_failure_is_alerted_once_per_webhook_across_restarts(
        app: Tether, clock: ManualClock, config: AlertConfig) -> None:
    before = fail_one(app, clock, "before")  # alerts not on yet: not sent
    clock.advance(60)
    Detector(app, config).tick(clock.now())
    assert alert_runs(app) == []

    failed = fail_one(app, clock, "after")
    detector = Detector(app, config)
    detector.tick(clock.now())
    detector.tick(clock.now())
    Detector(app, config).tick(clock.now())  # a restart, or a second server: nothing more
    payloads = alert_runs(app)
    assert sorted(p["webhook"] for p in payloads) == sorted(map(events.webhook_id, HOOKS))
    assert {p["url"] for p in payloads} == {"http://127.0.0.1:9/…"}  # the path is not shown
    bodies = {p["body"] for p in payloads}
    assert len(bodies) == 1
    body = bodies.pop().encode()
    assert all(events.verify(SECRET, body, p["signature"]) for p in payloads)
    assert SECRET not in json.dumps(payloads)  # the payload never holds the secret
    assert "token" not in json.dumps(payloads)  # nor the webhooks' paths
    event = json.loads(body)
    assert event["type"] == "run.failed" and event["data"]["runId"] == failed != before
    assert event["data"]["error"] == {"type": "ValueError", "message": "broken by after"}
    assert event["data"]["dashboardUrl"] == f"http://tether.test/runs/{failed}"
    assert {p["eventId"] for p in payloads} == {event["id"]}
    assert app.storage.get_setting("alerts.failed_cursor") is not None

    # retried by hand and failed again: another event (the attempt count is in its id)
    app.runs.retry(failed)
    clock.advance(1)
    drain(Worker(app, queues=["breaks"]))
    Detector(app, config).tick(clock.now())
    assert len(alert_runs(app)) == 4


def test_a_hand_made_alert_is_refused_and_its_failure_not_alerted(
        app: Tether, clock: ManualClock, config: AlertConfig) -> None:
    Detector(app, config).tick(clock.now())
    forged = {"webhook": events.webhook_id(HOOKS[0]), "url": "x", "event": "run.failed", "eventId": "alert_x",
              "body": '{"type":"run.failed"}', "signature": "sha256=" + "0" * 64}
    run_id = app.trigger(ALERT_TASK, forged).id
    clock.advance(1)
    drain(Worker(app, queues=[ALERT_QUEUE], schedules=False))
    run = app.runs.retrieve(run_id)
    assert run.status == RunStatus.FAILED and run.attempts == 1
    assert run.error is not None and "does not match" in run.error["message"]
    Detector(app, config).tick(clock.now())
    assert len(alert_runs(app)) == 1  # only the forged one


def test_a_backlog_is_alerted_once_per_episode(app: Tether, clock: ManualClock,
                                               config: AlertConfig) -> None:
    @app.task(id="slow", queue="busy")
    def slow(payload: Any) -> None:
        return None

    slow.trigger(1)
    detector = Detector(app, config)
    detector.tick(clock.now())
    assert alert_runs(app) == []  # waited 0 s
    clock.advance(61)
    detector.tick(clock.now())
    detector._next_backlog = 0.0
    detector.tick(clock.now())
    Detector(app, config).tick(clock.now())  # a restart keeps the episode
    payloads = alert_runs(app)
    assert len(payloads) == 2  # one per webhook
    event = json.loads(payloads[0]["body"])
    assert event["type"] == "queue.backlog" and event["data"]["queue"] == "busy"
    assert event["data"]["oldestReadySeconds"] == 61

    drain(Worker(app, queues=["busy"]))  # the queue empties: the episode ends
    detector._next_backlog = 0.0
    detector.tick(clock.now())
    slow.trigger(2)
    clock.advance(61)
    detector._next_backlog = 0.0
    detector.tick(clock.now())
    assert len(alert_runs(app)) == 4  # a new episode


def test_settings_are_checked() -> None:
    assert split_urls(("http://a/x, http://b/y", "http://a/x\thttp://c/z")) == [
        "http://a/x", "http://b/y", "http://c/z"]
    assert split_urls(None) == [] and split_urls(" ") == []
    with pytest.raises(ConfigurationError, match="not an http"):
        AlertConfig(("ftp://a",), SECRET)
    with pytest.raises(ConfigurationError, match="need a signing secret"):
        AlertConfig(HOOKS, "")
    with pytest.raises(ConfigurationError, match="at least 16"):
        AlertConfig(HOOKS, "short")
    assert not AlertConfig((), "").enabled


def test_webhooks_are_shown_without_their_path() -> None:
    assert events.shown("https://hooks.example.com/services/T0/B0/secret") == \
        "https://hooks.example.com/…"
    assert events.shown("https://user:pw@example.com:8443/x?k=1") == "https://example.com:8443/…"
    assert events.shown("http://example.com/") == "http://example.com"
    assert events.webhook_id("http://a/x") != events.webhook_id("http://a/y")


def test_signatures() -> None:
    body = b'{"type":"run.failed"}'
    header = events.sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert events.verify(SECRET, body, header)
    assert not events.verify(SECRET, body + b" ", header)
    assert not events.verify("another-secret-0123456", body, header)
    assert events.event_id("run.failed:run_a:1") == events.event_id("run.failed:run_a:1")
    assert events.event_id("run.failed:run_a:1") != events.event_id("run.failed:run_a:2")


def test_a_stalled_worker_is_alerted_once_per_stall(app: Tether, clock: ManualClock,
                                                    config: AlertConfig) -> None:
    now = clock.now()
    app.storage.register_worker(WorkerRecord("w-stuck", "host-a", 4242, "*", 10, now, now, None))
    detector = Detector(app, config)
    detector.tick(now)
    assert alert_runs(app) == []  # not stalled: nothing

    app.storage.mark_stalled("w-stuck", now + 1, 1)
    clock.advance(2)
    detector.tick(clock.now())
    detector.tick(clock.now())
    Detector(app, config).tick(clock.now())  # a restart: the same stall is not sent again
    payloads = alert_runs(app)
    assert len(payloads) == 2  # one per webhook
    event = json.loads(payloads[0]["body"])
    assert event["type"] == "worker.stalled"
    assert event["data"]["workerId"] == "w-stuck" and event["data"]["pid"] == 4242

    app.storage.mark_stalled("w-stuck", None, 1)  # recovered
    clock.advance(1)
    detector.tick(clock.now())
    app.storage.mark_stalled("w-stuck", clock.now(), 2)  # a second stall: a new alert
    clock.advance(1)
    detector.tick(clock.now())
    assert len(alert_runs(app)) == 4
