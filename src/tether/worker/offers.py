"""The worker's offer (a mixin of Worker; storage/offers.py): made when it has nothing to run,
made anew under a new token before a trigger would stop taking it, withdrawn when it stops. A
run that took it arrives as a message with its row and starts at once, its lease counted by
this worker's clock from the moment the offer was sent, as for a claim sent then; a lease that
is no longer valid by that clock starts nothing and the run goes back to its queue."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict

from tether.clock import new_id
from tether.engine import states
from tether.engine.leases import margin_for
from tether.errors import StorageUnavailable
from tether.storage.offers import Offer, took
from tether.storage.records import ClaimedRun, Finish, Lease, RunRecord
from tether.wakeup import Listener
from tether.worker.claims import Claims

log = logging.getLogger("tether.worker")

USABLE = 1 / 3  # of the lease: how long after it is made a trigger may take an offer
REFRESH = 1 / 6  # of the lease (at most the poll interval): an open offer is then made anew
KEPT = 4  # offers made last whose runs may still be announced (one taken as it was renewed)


class Offering(Claims):
    """Mixed into Worker: what it needs of the worker is declared here and in HandOver."""

    _offer: Offer | None  # open, as far as this worker knows (its token is in _offers_made)
    _offers_made: OrderedDict[str, float]  # token -> time.monotonic() before it was sent
    _listener: Listener | None  # (Messages)
    poll_interval: float

    def _offered(self) -> int:
        """The place kept for the open offer: 1 until a run took it, it was withdrawn, or a
        trigger can no longer take it (its lease's margin after it stopped being usable)."""
        if self._offer is None:
            return 0
        lease = self.app.lease_seconds
        if time.monotonic() < self._offer_since() + lease * USABLE + margin_for(lease):
            return 1
        self._offer = None
        return 0

    def _offer_wanted(self, running: int) -> bool:
        """Whether to offer with `running` attempts left: none, and no open offer that a
        trigger can take for a while yet. Only a worker that listens for messages offers (the
        one `run` serves; not `run_until_idle`, which would leave its offer behind), and only
        with two places or more: the open offer keeps one, and a worker of one place would
        then claim nothing (runs a trigger cannot give to an offer, a batch's say, would wait)."""
        if (not self.app.storage.offers or self._listener is None or self._stopping
                or self.concurrency < 2 or self._heirs or running or self.line.ids()):
            return False
        return self._offered() == 0 or time.monotonic() >= self._offer_since() + self._refresh()

    def _offer_since(self) -> float:
        """time.monotonic() before the open offer was sent (0.0, as if long expired, in case
        failed offers since trimmed it from _offers_made)."""
        return 0.0 if self._offer is None else self._offers_made.get(self._offer.token, 0.0)

    def _refresh(self) -> float:
        """How long an open offer stands before it is made anew: each time, the runs that
        took this worker's earlier offers come back, in case their message was lost."""
        return min(self.app.lease_seconds * REFRESH, self.poll_interval)

    def _next_offer(self) -> Offer:
        since = time.monotonic()
        now, lease = self.app.clock.now(), self.app.lease_seconds
        offer = Offer(self.id, new_id("lease"), self.task_ids, self.queues, self.version, now,
                      now + lease, now + lease * USABLE)
        self._offers_made[offer.token] = since
        while len(self._offers_made) > KEPT:
            self._offers_made.popitem(last=False)
        return offer

    def _keep_offer(self) -> None:
        """Before the loop waits with nothing to run: offer, or offer anew when the open one
        is about to stop being usable (on the loop: nothing runs that the round trip holds up)."""
        if not self._offer_wanted(len(self.running)):
            return
        offer = self._next_offer()
        earlier = [token for token in self._offers_made if token != offer.token]
        try:
            taken = self.app.storage.make_offer(offer, earlier)
        except StorageUnavailable as exc:
            log.warning("cannot offer to take the next run: %s", exc)
            return
        self._made(offer)
        for record in taken:  # (their message did not come)
            self._start_taken(record)

    # -- FinishBatcher's Refill: the offer made in the commit that ends the last attempts ------
    def offer_after(self, finishing: int) -> Offer | None:
        """The offer to make in the commit that ends the one attempt this worker runs: it is
        in place when that run's caller is told, before it triggers again. (Several attempts
        ending together mean runs come faster than one at a time: claims serve them better,
        and the loop offers once it waits.)"""
        if finishing != 1 or len(self.running) > 1 or not self._offer_wanted(0):
            return None
        return self._next_offer()

    def offer_made(self, offer: Offer) -> None:
        """That commit is over (a failed one makes no offer: the next idle loop does)."""
        self._made(offer)

    def _made(self, offer: Offer) -> None:
        """The offer is stored: it is the open one, unless a run took it before the answer
        came (that run's message popped its token; that run's end makes the next one)."""
        if offer.token in self._offers_made and not self._stopping:
            self._offer = offer

    def _took(self, messages: list[str]) -> None:
        """"took" messages: those for this worker start the runs that took its offers."""
        for message in messages:
            parsed = took(message)
            if parsed is None or parsed[0] != self.id:
                continue
            body = parsed[1]
            if body.startswith("{"):
                try:
                    record = RunRecord.from_mapping(json.loads(body))
                except (ValueError, KeyError, TypeError) as exc:  # (the next renewal finds it)
                    log.error("a \"took\" message could not be read (%s): %.200s", exc, body)
                    continue
                self._start_taken(record)
            else:  # (a row too long for a message: read it)
                task = asyncio.get_running_loop().create_task(self._read_taken(body))
                self._handing_back.add(task)
                task.add_done_callback(self._handing_back.discard)

    async def _read_taken(self, run_id: str) -> None:
        try:
            record = await asyncio.to_thread(self.app.storage.get_run, run_id)
        except StorageUnavailable as exc:
            log.error("run %s took this worker's offer, but cannot be read: %s (it runs once "
                      "its lease ran out)", run_id, exc)
            return
        if record is not None and record.worker_id == self.id:
            self._start_taken(record)

    def _start_taken(self, record: RunRecord) -> None:
        token = record.lease_token
        since = self._offers_made.pop(token or "", None)
        if token is None or since is None:
            return  # not an offer of this worker's, or its run is started already
        if self._offer is not None and self._offer.token == token:
            self._offer = None
        claimed = ClaimedRun(record, Lease(record.id, token, record.attempts, self.id), False)
        self.leases.granted([claimed.lease], since)
        full = len(self.running) + len(self._heirs) >= self.concurrency
        if self._stopping or full or not self.leases.valid(claimed.lease):
            # (full: it took an offer made before the places filled, as it was being renewed)
            why = ("the worker stopped" if self._stopping else "the worker was full" if full
                   else "its lease ran out first")
            transition = states.handed_back(f"took a worker's offer and did not start ({why}); "
                                            "back in the queue, not counted")
            self._hand_back_taken(claimed, transition)
            return
        self.started([claimed], 0, since=since)

    def _hand_back_taken(self, claimed: ClaimedRun, transition: states.Transition) -> None:
        async def back() -> None:
            try:
                await self.runner.batcher.finish(Finish(claimed.lease, transition))
            except Exception as exc:  # (its lease runs out and the run is retried)
                log.warning("run %s: cannot hand back: %s", claimed.record.id, exc)
            finally:
                self.leases.forget(claimed.lease)

        task = asyncio.get_running_loop().create_task(back())
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    async def _withdraw_offer(self) -> None:
        """When stopping: the offer is withdrawn (also one whose commit the worker has not heard
        back from); a run that took one of its offers, not started yet, goes back."""
        self._offer = None
        if not self.app.storage.offers or not self._offers_made:
            return
        try:
            taken = await asyncio.to_thread(self.app.storage.withdraw_offer, self.id,
                                            list(self._offers_made))
        except StorageUnavailable as exc:
            log.warning("cannot withdraw this worker's offer: %s (it lapses by itself)", exc)
            return
        for record in taken:
            self._start_taken(record)
