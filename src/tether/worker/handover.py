"""The worker's side of runs held in line (the books are in line.py): which run takes over an
ending attempt's slot, starting it once the commit handed the slot over, and handing back the
runs it holds in line but will not start."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tether.engine import states
from tether.engine.attempt import AttemptRunner, Execution
from tether.engine.leases import LeaseClock
from tether.storage.records import ClaimedRun, Finish
from tether.worker.line import Line

if TYPE_CHECKING:
    from tether.app import Tether

log = logging.getLogger("tether.worker")


class HandOver:
    """Mixed into Worker: what it needs of the worker is declared here."""

    app: Tether
    line: Line
    running: dict[str, Execution]
    runner: AttemptRunner
    leases: LeaseClock
    _heirs: dict[str, ClaimedRun]  # taken from the line, their hand-over in flight
    _handing_back: set[asyncio.Task[None]]
    _stopping: bool

    def _start(self, claimed: ClaimedRun, holds_slot: bool) -> None:
        raise NotImplementedError

    def successor(self, execution: Execution) -> ClaimedRun | None:
        """`execution` just ended: the run held in line for its slot, if there is one. The
        commit that records the end hands the slot over to it; `inherit` then starts it."""
        if not execution.holds_slot:
            return None
        record = execution.claimed.record
        self.line.ended(record.queue, time.monotonic() - execution.began)
        heir = None if self._stopping else self.line.take((record.queue, record.concurrency_key))
        if heir is None:
            return None
        execution.handed_over = True
        self._heirs[heir.record.id] = heir
        return heir

    def inherit(self, heir_id: str, handed_over: bool) -> None:
        """Right after the commit that ended the attempt before run `heir_id`: the heir starts
        if that commit gave it the slot. If not (the ending attempt had lost its lease, or the
        heir had), it starts nothing and goes back to its queue, if it is still this worker's."""
        heir = self._heirs.pop(heir_id, None)
        if heir is None:
            return
        if handed_over and not self._stopping:
            self._start(heir, holds_slot=True)
            return
        if not handed_over:
            log.warning("run %s: the slot was not handed over to it; not started, back to the "
                        "queue", heir_id)
        self._hand_back_soon([heir], "the slot it was held for was not handed over"
                             if not handed_over else "the worker shut down")

    def _holders(self) -> collections.Counter[tuple[str, str]]:
        """Slots this worker holds per (queue, key), those being handed over to heirs included."""
        held = collections.Counter(
            (e.claimed.record.queue, e.claimed.record.concurrency_key)
            for e in self.running.values() if e.holds_slot and not e.handed_over)
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

