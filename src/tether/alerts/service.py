"""Alerts beside `tether serve`: the detector thread, and a worker for the `tether-alerts` queue
only (on a thread with its own event loop), which delivers the alerts stored as runs. Alerts not
yet delivered when the server stops stay queued: the next start delivers them (a server killed
mid-delivery leaves its attempt to be found crashed and tried again)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from tether.alerts import delivery
from tether.alerts.config import AlertConfig
from tether.alerts.detector import Detector
from tether.worker.timers import new_event_loop
from tether.worker.worker import Worker

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.alerts")

CONCURRENCY = 4  # alerts delivered at once (one slow receiver does not hold the others up)


class AlertService:
    def __init__(self, app: Tether, config: AlertConfig) -> None:
        self.app = app
        self.config = config
        delivery.register(app, config)
        self.worker = Worker(app, concurrency=CONCURRENCY, queues=[delivery.ALERT_QUEUE],
                             shutdown_grace=5.0, schedules=False)
        self.detector = Detector(app, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run_worker, name="tether-alert-worker",
                                        daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(30)
        self.detector.start()
        log.info("alerts: %d webhook(s); queue wait threshold %gs", len(self.config.webhooks),
                 self.config.queue_wait)

    def _run_worker(self) -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            self._loop = runner.get_loop()
            self._started.set()
            try:
                runner.run(self.worker.run())
            except Exception:
                log.exception("the alert worker stopped")

    def stop(self, timeout: float = 15.0) -> None:
        self.detector.stop()
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.worker.stop)
            self._thread.join(timeout)
