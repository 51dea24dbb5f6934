"""The thread in `tether serve` that finds what to alert about and turns each finding into runs
of `tether.alert` (one per webhook), each with an idempotency key made from the event, so the
same event found twice (another server process, a restart) is delivered once.

- run.failed: runs that ended FAILED or TIMED_OUT after a cursor kept in the settings table
  (`alerts.failed_cursor`, finished_at), read again MARGIN seconds back (an ending committed late
  with an earlier time is not missed; what was seen is skipped by the keys). The first start sets
  the cursor to now: failures from before alerts were configured are not sent.
- queue.backlog: a queue whose oldest ready run has waited longer than the threshold; once per
  episode (the episodes open are kept in the setting `alerts.backlog`: queue -> when it began),
  which ends when that wait is back under half the threshold or the queue has no ready run.
- worker.stalled: a live worker whose record has `stalled_since` (the workers' stall detection);
  once per stall (the key holds when it began).
Runs of `tether.alert` itself and the `tether-alerts` queue are left out (no alert loops)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from tether.alerts import events
from tether.alerts.config import AlertConfig
from tether.alerts.delivery import ALERT_QUEUE, ALERT_TASK
from tether.errors import StorageUnavailable

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.alerts")

CURSOR = "alerts.failed_cursor"
BACKLOG = "alerts.backlog"
MARGIN = 30.0  # seconds read again behind the cursor
BACKLOG_EVERY = 5.0  # seconds between looks at the queues (a scan of the ready runs)
WORKER_HORIZON = 3600.0  # workers seen within this long are looked at for stalls
BATCH = 200


def _episodes(text: str | None) -> dict[str, str]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


class Detector(threading.Thread):
    def __init__(self, app: Tether, config: AlertConfig) -> None:
        super().__init__(daemon=True, name="tether-alerts")
        self.app = app
        self.config = config
        self.stopped = threading.Event()
        self.cursor: float | None = None
        self.seen: dict[str, float] = {}  # event subjects triggered by this process -> when
        self._next_backlog = 0.0
        self.episodes: dict[str, str] | None = None  # queue -> when its backlog began
        self.sent = 0  # alert runs this detector created

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.tick(self.app.clock.now())
            except StorageUnavailable as exc:
                log.error("cannot look for alerts: %s; trying again", exc)
            except Exception:
                log.exception("looking for alerts failed; trying again")
            self.stopped.wait(self.config.poll_interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def tick(self, now: float) -> None:
        self.failed_runs(now)
        if time.monotonic() >= self._next_backlog:
            self._next_backlog = time.monotonic() + BACKLOG_EVERY
            self.backlogs(now)
        self.stalled_workers(now)
        self._forget(now)

    # -- what to alert about --------------------------------------------------------------------
    def failed_runs(self, now: float) -> None:
        storage = self.app.storage
        if self.cursor is None:
            stored = storage.get_setting(CURSOR)
            self.cursor = float(stored) if stored else now
            if not stored:
                storage.put_setting(CURSOR, repr(now))
        at, after_id, last = self.cursor - MARGIN, "", self.cursor
        while True:
            found = storage.failures_since(at, after_id, BATCH)
            records = {r.id: r for r in storage.get_runs([run_id for _, run_id in found])}
            for _, run_id in found:
                record = records.get(run_id)
                if record is None or record.task_id == ALERT_TASK or record.queue == ALERT_QUEUE:
                    continue
                if f"{events.RUN_FAILED}:{record.id}:{record.attempts}" in self.seen:
                    continue
                subject, body = events.run_failed(record, now, self.config.public_url)
                self._send(events.RUN_FAILED, subject, body, now)
            if found:
                at, after_id = found[-1]
                last = max(last, at)
            if len(found) < BATCH:
                break
        if last > self.cursor:
            self.cursor = last
            storage.put_setting(CURSOR, repr(last))

    def backlogs(self, now: float) -> None:
        storage, threshold = self.app.storage, self.config.queue_wait
        if self.episodes is None:
            self.episodes = _episodes(storage.get_setting(BACKLOG))
        episodes = dict(self.episodes)
        oldest = {q: at for q, at in storage.oldest_ready(now).items() if q != ALERT_QUEUE}
        for queue in list(episodes):
            if queue not in oldest or now - oldest[queue] < threshold / 2:
                del episodes[queue]  # over: the next backlog is another episode
                log.info("alerts: queue %s is back under the wait threshold", queue)
        began = [q for q, at in oldest.items() if now - at > threshold and q not in episodes]
        if began:  # another server process may have begun the same episode: take its
            stored = _episodes(storage.get_setting(BACKLOG))
            episodes.update({q: stored.get(q) or repr(now) for q in began})
        if episodes != self.episodes:
            storage.put_setting(BACKLOG, json.dumps(episodes))  # first: a restart keeps them
            self.episodes = episodes
        for queue, episode in episodes.items():
            if now - oldest[queue] <= threshold:
                continue
            subject, body = events.queue_backlog(queue, oldest[queue], episode, threshold, now,
                                                 self.config.public_url)
            if subject not in self.seen:
                self._send(events.QUEUE_BACKLOG, subject, body, now)

    def stalled_workers(self, now: float) -> None:
        for worker in self.app.storage.list_workers(now - WORKER_HORIZON):
            # (the worker's stall watch sets stalled_since while its loop does not answer)
            since = worker.stalled_since
            if since is None or worker.stopped_at is not None:
                continue
            subject, body = events.worker_stalled(worker, since, now)
            if subject not in self.seen:
                self._send(events.WORKER_STALLED, subject, body, now)

    # -- helpers --------------------------------------------------------------------------------
    def _send(self, kind: str, subject: str, body: bytes, now: float) -> None:
        """One run of tether.alert per webhook; the keys make a repeat return the first runs."""
        text = body.decode()
        signature = events.sign(self.config.secret, body)
        for url in self.config.webhooks:
            payload: dict[str, Any] = {"webhook": events.webhook_id(url),
                                       "url": events.shown(url), "event": kind,
                                       "eventId": events.event_id(subject), "body": text,
                                       "signature": signature}
            # (an error stops the tick before the cursor moves: the next tick tries again, and
            # the keys make the webhooks already stored return their runs)
            handle = self.app.trigger(ALERT_TASK, payload,
                                      idempotency_key=events.url_key(subject, url))
            log.info("alert %s (%s) for %s: run %s", kind, subject, events.shown(url), handle.id)
            self.sent += 1
        self.seen[subject] = now

    def _forget(self, now: float) -> None:
        """Keep what was seen for a while (at least the re-read margin): bounded memory."""
        if len(self.seen) > 10_000:
            horizon = now - 10 * MARGIN
            self.seen = {s: t for s, t in self.seen.items() if t >= horizon}
