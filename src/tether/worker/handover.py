"""The worker's side of runs held in line (the books are in line.py): which run takes over an
ending attempt's slot, and when it starts; handing back the runs it holds in line but will not
start.

The commit that ends an attempt hands its slot to the run taken from the line. The heir starts
at once, before that commit, when the worker can prove by its own clock (LeaseClock) that nobody
else can have the slot until then: the slot is stored as held by the ending run's row (or, if
that run itself started before its own hand-over was committed, by the row of the run before it,
and so on), and another worker takes such a slot only once that row's lease expired. So the
leases of the ending run, of every run between it and the slot's stored holder, of the holder,
and the heir's own must all still be valid. Otherwise the heir starts once the commit says it
got the slot. A hand-over refused after an early start (a lease was lost meanwhile) stops the
heir and sends it back to the queue, its attempt not counted; its ending, if it ended before,
is written only after that commit (FinishBatcher), so no stored attempt overlaps another."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tether.engine import states
from tether.engine.attempt import AttemptRunner
from tether.engine.execution import Execution
from tether.engine.leases import LeaseClock
from tether.errors import StorageUnavailable
from tether.storage.records import ClaimedRun, ClaimRequest, Finish
from tether.worker.line import Line

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.worker")


class HandOver:
    """Mixed into Worker: what it needs of the worker is declared here."""

    app: Tether
    id: str
    task_ids: list[str]
    queues: list[str] | None
    version: str | None
    unpinned: list[str]
    line: Line
    running: dict[str, Execution]
    runner: AttemptRunner
    leases: LeaseClock
    _heirs: dict[str, ClaimedRun]  # taken from the line, their hand-over in flight
    _handing_back: set[asyncio.Task[None]]
    _stopping: bool
    _lining_up: bool  # runs in line are being asked for by `_ask_line`

    def claim_request(self, limit: int, standby: list[tuple[str, str, int]]) -> ClaimRequest:
        return ClaimRequest(self.id, self.task_ids, self.queues, limit, self.app.clock.now(),
                            self.app.lease_seconds, standby, self.version, self.unpinned)

    def started(self, claimed: list[ClaimedRun], asked: int, standby_asked: int = 0,
                since: float | None = None) -> None:
        raise NotImplementedError

    def _start(self, claimed: ClaimedRun, holds_slot: bool,
               before: Execution | None = None) -> None:
        raise NotImplementedError

    def successor(self, execution: Execution) -> ClaimedRun | None:
        """`execution` just ended: the run held in line for its slot, if there is one. The
        commit that records the end hands the slot over to it. It starts now if the slot is
        this worker's until then by its own clock (`_slot_kept`), else `inherit` starts it
        after that commit."""
        if not execution.holds_slot:
            return None
        record = execution.claimed.record
        self.line.ended(record.queue, time.monotonic() - execution.began)
        heir = None if self._stopping else self.line.take((record.queue, record.concurrency_key))
        if heir is None:
            return None
        execution.handed_over = True
        if self._slot_kept(execution) and self.leases.valid(heir.lease):
            self._start(heir, holds_slot=True, before=execution)
        else:
            self._heirs[heir.record.id] = heir
        return heir

    def _slot_kept(self, execution: Execution) -> bool:
        """Whether, by this worker's clock, the slot `execution` holds cannot be anyone else's
        now: the leases of `execution` and of the runs before it back to the one stored as the
        slot's holder are all valid (another worker takes a slot only once the lease of the
        row holding it expired), and no hand-over on the way was refused."""
        link: Execution | None = execution
        while link is not None:
            if link.stop_reason is not None or not self.leases.valid(link.claimed.lease):
                return False
            if link.before is None:
                return True  # stored as the slot's holder
            link = link.before
        return False

    def inherit(self, heir_id: str, handed_over: bool) -> None:
        """Right after the commit that ended the attempt before run `heir_id`: the heir starts
        if that commit gave it the slot. If not (the ending attempt had lost its lease, or the
        heir had), it starts nothing and goes back to its queue, if it is still this worker's.
        An heir started early holds the slot as stored from now on, or is stopped."""
        heir = self._heirs.pop(heir_id, None)
        if heir is None:
            self._placed(heir_id, handed_over)
            return
        if handed_over and not self._stopping:
            self._start(heir, holds_slot=True)
            return
        if not handed_over:
            log.warning("run %s: the slot was not handed over to it; not started, back to the "
                        "queue", heir_id)
        self._hand_back_soon([heir], "the slot it was held for was not handed over"
                             if not handed_over else "the worker shut down")

    def _line_up(self) -> None:
        """Slots were just claimed: their runs in line are asked for at once, not in the commit
        that ends their first attempt (too late: that attempt ended with no run in line, its
        slot went back to every worker's claims, and so on). Where each call is a round trip,
        in a commit of its own on a thread, not behind the batch of endings in flight."""
        standby = [] if self._lining_up or self._stopping else self.line.wanted(self._holders)
        if not standby:
            return
        if not self.app.storage.io_bound:
            self.runner.batcher.ask()  # the next loop turn's commit asks for them
            return
        self._lining_up = True
        task = asyncio.get_running_loop().create_task(self._ask_line(standby))
        self._handing_back.add(task)  # (waited for on shutdown, like hand-backs)
        task.add_done_callback(self._handing_back.discard)

    async def _ask_line(self, standby: list[tuple[str, str, int]]) -> None:
        since = time.monotonic()
        request = self.claim_request(0, standby)
        try:
            _, claimed = await asyncio.to_thread(self.app.storage.finish_attempts, [],
                                                 request.now, request)
        except StorageUnavailable as exc:
            log.error("cannot claim runs in line: %s", exc)
            return
        finally:
            self._lining_up = False
        if self._stopping:
            self.leases.granted((c.lease for c in claimed), since)
            await self._hand_back(claimed, "the worker shut down")
            return
        self.started(claimed, 0, sum(n for _, _, n in standby), since)

    def _placed(self, heir_id: str, handed_over: bool) -> None:
        execution = self.running.get(heir_id)
        if execution is None or execution.before is None or execution.stop_reason is not None:
            return
        if handed_over:
            execution.before = None  # the slot is stored as its own
            return
        # running on a slot it did not get (a lease on the way was lost: canceled, or taken
        # over after this worker was cut off or frozen): it stops now, or at its next durable
        # call (a sync task), and goes back to the queue; an ending already made is not written
        log.warning("run %s: started as the run before it ended, but the slot was not handed "
                    "over to it; stopped, back to the queue", heir_id)
        execution.stop_reason = "no_slot"
        execution.holds_slot = False
        if execution.scope is not None:
            execution.scope.dead = True
            if not execution.finishing and execution.task is not None:
                execution.task.cancel()

    def _holders(self) -> collections.Counter[tuple[str, str]]:
        """Slots this worker holds per (queue, key), those being handed over to heirs included
        (an attempt that ended without an heir frees its slot in the commit that ends it)."""
        held = collections.Counter(
            (e.claimed.record.queue, e.claimed.record.concurrency_key)
            for e in self.running.values() if e.holds_slot and not e.finishing)
        held.update((c.record.queue, c.record.concurrency_key) for c in self._heirs.values())
        return held

    def _trim_line(self) -> None:
        """More runs in line than slots held there (this worker's runs of that queue ended
        without successors): the extra ones go back to the queue, where any worker can give
        them a free slot, instead of waiting here for one of this worker's."""
        extra = self.line.extra(self._holders()) if self.line else []
        if extra:
            self._hand_back_soon(extra, "more runs in line than places held")

    def _hand_back_soon(self, lined: list[ClaimedRun], why: str) -> None:
        task = asyncio.get_running_loop().create_task(self._hand_back(lined, why))
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    async def _hand_back(self, lined: list[ClaimedRun], why: str) -> None:
        """Runs held in line go back to their queue, their attempt not counted."""
        transition = states.left_the_line(why)
        await asyncio.gather(*(self.runner.batcher.finish(Finish(c.lease, transition))
                               for c in lined), return_exceptions=True)
        for c in lined:
            self.leases.forget(c.lease)

    def _drop_from_line(self, run_ids: Iterable[str]) -> None:
        for claimed in self.line.drop(run_ids):
            self.leases.forget(claimed.lease)

