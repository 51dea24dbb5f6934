"""The worker's messages and lost leases (a mixin of Worker): watching the listener's
connection, the messages it brings (new runs, freed slots, cancels), the runs the housekeeping
thread renews, and stopping a run this worker no longer holds."""

from __future__ import annotations

import asyncio
import logging

from tether.storage.offers import TOOK
from tether.wakeup import READY, Listener
from tether.worker.due import NextDue
from tether.worker.handover import HandOver
from tether.worker.wake import Wake

log = logging.getLogger("tether.worker")


class Messages(HandOver):
    """Mixed into Worker: what it needs of the worker is declared here and in HandOver."""

    due: NextDue
    _wake: Wake
    _news: bool  # a message or a poll since the last claim: runs may be claimable
    _listener: Listener | None
    _listening: tuple[int, int] | None  # (fd, generation) the loop watches
    _loop: asyncio.AbstractEventLoop | None

    def _watch_listener(self) -> None:
        """Keep the loop watching the listener's current connection: a PostgreSQL listener
        reconnects after the server restarts, with a new socket. Until it has one, the worker
        polls (every `poll_interval`)."""
        assert self._listener is not None and self._loop is not None
        fd, generation = self._listener.fileno(), self._listener.generation
        if self._listening == (fd, generation):
            return
        if self._listening is not None:
            self._loop.remove_reader(self._listening[0])
            self._listening = None
        if fd >= 0:
            self._loop.add_reader(fd, self._on_message)
            self._listening = (fd, generation)
            # messages sent while there was no connection are lost: claim and look again
            self._news = True
            self.due.forget()

    def _on_message(self) -> None:
        assert self._listener is not None
        messages = self._listener.drain()
        self._watch_listener()
        taken = [message for message in messages if message.startswith(TOOK)]
        if taken:
            # runs that took a worker's offer: this one's start, the others' are no news
            self._took(taken)
            messages = [message for message in messages if not message.startswith(TOOK)]
            if not messages:
                return
        self.line.open = True  # runs may have been triggered: ask for runs in line again
        self._news = True
        if any(message != READY for message in messages):
            self.due.forget()  # a delayed run, a slot, a cancel, ...: look again
        for message in messages:
            if message.startswith("cancel "):
                self._drop_from_line([message.split(" ", 1)[1]])
                self._stop_run(message.split(" ", 1)[1], "canceled")
        self._wake.set()

    def _took(self, messages: list[str]) -> None: ...  # (worker/offers.py)

    def _running_ids(self) -> list[str]:
        """From the housekeeping thread: a snapshot of the runs executing here."""
        for _ in range(10):
            try:
                self.line.renewing = set(self.line.ids())
                return list(self.running) + list(self.line.renewing)
            except RuntimeError:  # the loop changed the table meanwhile
                continue
        self.line.renewing = set(self.line.ids())
        return list(self.running.copy()) + list(self.line.renewing)

    def _renewed(self, held: set[str], since: float) -> None:
        """From the housekeeping thread: a renewal sent at `since` extended the leases of
        `held`; the runs this worker executes but no longer holds are stopped."""
        self.leases.renewed(held, since)
        if self._loop is None:
            return
        lost = [run_id for run_id in list(self.running) if run_id not in held]
        # (of the runs in line when the renewal began: those taken in line since are not in it)
        lost_in_line = self.line.renewing - held
        if lost_in_line:
            self._loop.call_soon_threadsafe(self._drop_from_line, lost_in_line)
        for run_id in lost:
            self._loop.call_soon_threadsafe(self._stop_run, run_id, "lease_lost")

    def _stop_run(self, run_id: str, reason: str) -> None:
        execution = self.running.get(run_id)
        if execution is None or execution.finishing or execution.task is None:
            return
        if reason != "shutdown":
            record = self.app.storage.get_run(run_id)
            if record is not None and record.lease_token == execution.claimed.lease.token:
                return  # still ours: a stale message
        execution.stop_reason = reason
        if execution.scope is not None:
            execution.scope.dead = True
        execution.task.cancel()
        log.info("run %s: stopping its attempt (%s)", run_id, reason)
