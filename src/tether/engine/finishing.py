"""Ending attempts: the FinishBatcher group-commits the attempts that end in the same turn of
the event loop (one storage.finish_attempts transaction, fenced by each lease), claims runs for
the places they free in that commit (the worker's Refill), and holds back the ending of a run
started before the commit that hands it its slot until that commit said whether it did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from tether.engine import states
from tether.engine.execution import Execution
from tether.storage.offers import Offer
from tether.storage.records import ClaimedRun, ClaimRequest, Finish, RunRecord

if TYPE_CHECKING:
    from tether.app import Tether

# the ending of a run started before the commit that was to hand it a slot, which did not
UNPLACED = ("started as the run before it in its queue's slot ended, but the commit that was to "
            "hand it that slot did not (that run or this one no longer held its lease); back "
            "in the queue, not counted")


class _Outcome:
    """A call's result or exception, carried back from a thread."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _attempt_call(fn: Callable[[], Any]) -> _Outcome:
    try:
        return _Outcome(fn())
    except Exception as exc:
        return _Outcome(error=exc)


class Refill(Protocol):
    """The worker's side of claiming in the same transaction that ends attempts."""

    concurrency: int  # how many attempts it runs at most

    def request(self, finishing: int) -> ClaimRequest | None: ...

    def started(self, claimed: list[ClaimedRun], asked: int, standby_asked: int = 0,
                since: float | None = None) -> None: ...

    def successor(self, execution: Execution) -> ClaimedRun | None: ...

    def inherit(self, heir_id: str, handed_over: bool) -> None: ...

    def gather_delay(self, run_id: str | None = None) -> float: ...

    def offer_after(self, finishing: int) -> Offer | None: ...

    def offer_made(self, offer: Offer) -> None: ...

    def frees_slot(self, run_id: str) -> bool: ...

    def running_count(self) -> int: ...


class FinishBatcher:
    """Group commit: attempts that end in the same turn of the event loop are written in one
    transaction, so a busy worker pays for one commit per batch instead of one per run."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.pending: list[tuple[Finish, asyncio.Future[RunRecord | None]]] = []
        self.refill: Refill | None = None
        self.scheduled = False
        self.in_flight: asyncio.Task[None] | None = None
        # successors named in endings not yet committed; the endings of those among them that
        # started early and ended already, held back until that commit: the run's end is never
        # written before (or with) the hand-over of its slot
        self.unconfirmed: set[str] = set()
        self.held: dict[str, tuple[Finish, asyncio.Future[RunRecord | None]]] = {}
        self.asking = False  # a commit is due even without endings (see `ask`)

    async def finish(self, item: Finish) -> RunRecord | None:
        future: asyncio.Future[RunRecord | None] = asyncio.get_running_loop().create_future()
        if item.successor is not None:
            self.unconfirmed.add(item.successor.run_id)
        if item.lease.run_id in self.unconfirmed:
            self.held[item.lease.run_id] = (item, future)
        else:
            self._add(item, future)
        return await future

    def ask(self) -> None:
        """Commit soon even if no attempt ends: the worker wants runs in line (for a slot it
        just claimed), which are asked for in the commits that end attempts."""
        if not self.asking:
            self.asking = True
            asyncio.get_running_loop().call_soon(self._start)

    def _add(self, item: Finish, future: asyncio.Future[RunRecord | None]) -> None:
        self.pending.append((item, future))
        loop = asyncio.get_running_loop()
        if item.successor is not None:
            # no gathering: the heir's hand-over is due. In the next turn, so that an heir
            # started early begins its body before a commit made on the loop (SQLite)
            loop.call_soon(self._start)
        elif self.scheduled and self._all_ending():
            self._start()  # nothing left to gather: every place's attempt is ending
        elif not self.scheduled:
            self.scheduled = True
            delay = self.refill.gather_delay(item.lease.run_id) if self.refill is not None else 0.0
            loop.call_later(delay, self._start)
        elif (self.refill is not None and self.app.storage.io_bound
              and self.refill.frees_slot(item.lease.run_id)):
            loop.call_soon(self._start)  # a slot waits on this commit: gathered long enough

    def _settle(self, heir_id: str, handed_over: bool) -> None:
        """The commit that was to hand run `heir_id` a slot returned: tell the worker, and write
        the heir's ending if it was held back; one that never got the slot goes back to the
        queue (not counted), and so does its own successor, in turn."""
        self.unconfirmed.discard(heir_id)
        if self.refill is not None:
            self.refill.inherit(heir_id, handed_over)
        held = self.held.pop(heir_id, None)
        if held is None:
            return
        item, future = held
        if not handed_over:
            if item.successor is not None:
                self._settle(item.successor.run_id, False)
            item = replace(item, transition=states.handed_back(UNPLACED), step=None,
                           successor=None)
        self._add(item, future)

    def _start(self) -> None:
        """Commit what is pending. A storage whose calls wait on the network is called from a
        thread, one batch at a time, so running tasks go on meanwhile and the attempts that end
        during one commit form the next batch."""
        self.scheduled = False
        if self.in_flight is not None:
            return  # the batch in flight starts the next one when it is done
        batch, self.pending = self.pending, []
        if not batch and not self.asking:
            return
        self.asking = False
        if not self.app.storage.io_bound or not self._others_running(len(batch)):
            self._commit(batch, self._write(batch))  # nothing else to stall: skip the thread hop
            return
        self.in_flight = asyncio.get_running_loop().create_task(self._commit_in_thread(batch))

    def _all_ending(self) -> bool:
        """Whether the attempts of all the worker's places wait in this batch (where a commit
        takes microseconds): its claim can take no more than it frees, so gathering longer
        would only delay the runs it starts. (With places free, runs arriving meanwhile are
        worth waiting for: they are claimed in the same commit.)"""
        return (not self.app.storage.io_bound and self.refill is not None
                and len(self.pending) >= self.refill.concurrency)

    def _others_running(self, ending: int) -> bool:
        return self.refill is not None and self.refill.running_count() > ending

    def _write(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]]
               ) -> Callable[[], _Written]:
        # (every item leaves the running set; a successor started early is in it already)
        items = [item for item, _ in batch]
        since = time.monotonic()  # before the claim's time is read: its leases count from here
        request = self.refill.request(len(items)) if self.refill is not None else None
        asked = request.limit if request is not None else 0
        standby = sum(n for _, _, n in request.standby) if request is not None else 0
        # the worker left with nothing to run offers to take the next run, in the same commit
        offer = self.refill.offer_after(len(items)) if self.refill is not None else None

        def write() -> _Written:
            results, claimed = self.app.storage.finish_attempts(items, self.app.clock.now(),
                                                                request, offer)
            return _Written(results, claimed, asked, standby, since, offer)

        return write

    async def _commit_in_thread(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]]
                                ) -> None:
        try:
            write = self._write(batch)
            outcome = await asyncio.to_thread(_attempt_call, write)
            self._commit(batch, lambda: outcome.result())
        finally:
            self.in_flight = None
            if (self.pending or self.asking) and not self.scheduled:
                self.scheduled = True
                asyncio.get_running_loop().call_soon(self._start)

    def _commit(self, batch: list[tuple[Finish, asyncio.Future[RunRecord | None]]],
                write: Callable[[], _Written]) -> None:
        try:
            written = write()
        except Exception as exc:
            for item, future in batch:
                if item.successor is not None:
                    self._settle(item.successor.run_id, False)
                if not future.done():
                    future.set_exception(exc)
            return
        for (item, future), result in zip(batch, written.results, strict=True):
            if item.successor is not None:
                # an heir waiting for this commit starts if it gave it the slot; a refused
                # hand-over (this attempt's lease was lost, or the heir's) starts nothing, and
                # stops an heir started early
                self._settle(item.successor.run_id, result is not None and result.handed_over)
            if not future.done():
                future.set_result(result)
        if (written.asked or written.standby) and self.refill is not None:
            self.refill.started(written.claimed, written.asked, written.standby, written.since)
        if written.offer is not None and self.refill is not None:
            self.refill.offer_made(written.offer)


@dataclass
class _Written:
    """What one commit of a batch returned, and what it asked for."""

    results: list[RunRecord | None]
    claimed: list[ClaimedRun]
    asked: int
    standby: int
    since: float  # time.monotonic() before the claim's time was read
    offer: Offer | None = None  # made in the same commit
