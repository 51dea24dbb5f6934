"""The worker's claim bookkeeping (a mixin of Worker): claiming from the loop or a thread, the
claim a commit that ends attempts makes for the places it frees (the FinishBatcher's Refill),
what the claimed runs start, and when claims come fast enough to gather work first."""

from __future__ import annotations

import asyncio
import collections
import time

from tether.engine.leases import LeaseClock
from tether.storage.records import ClaimedRun, ClaimRequest
from tether.worker.due import NextDue
from tether.worker.handover import HandOver

BUSY_CLAIMS, BUSY_WINDOW = 3, 0.001  # 3 runs claimed within 1 ms: they arrive faster than one at a time
GATHER_DELAY = 0.0005
STREAM_DELAY = 0.001  # (claims where each is a round trip, while attempts run: claim_delay)


class Claims(HandOver):
    """Mixed into Worker: what it needs of the worker is declared here and in HandOver."""

    concurrency: int
    leases: LeaseClock
    _reserved: int  # slots asked for by a claim still in flight
    _backlog: bool  # the last claim took all it asked for: more runs may be waiting
    _refill_asked: bool  # the commit being written claims runs too
    _recent_claims: collections.deque[float]
    rated: bool  # some of its tasks' queues have a rate limit
    _rate_follower: bool
    _claim_now: float
    due: NextDue

    def _refill_coming(self) -> bool:
        """Whether a commit that ends attempts is about to run on this loop: where storage
        calls take microseconds it also claims runs for every free place (`request`), so a
        claim of its own now would only add a transaction (each one makes the others wait for
        the write lock)."""
        batcher = self.runner.batcher
        return not self.app.storage.io_bound and batcher.scheduled and bool(batcher.pending)

    def _claim(self, free: int) -> list[ClaimedRun]:
        app = self.app
        since = time.monotonic()
        self._claim_now = now = app.clock.now()
        claimed = app.storage.claim_runs(self.id, self.task_ids, self.queues, free,
                                         now, app.lease_seconds, self.version,
                                         self.unpinned)
        self._refill_asked = False  # (a claim of its own: not one made by a commit that failed)
        self.started(claimed, free, since=since)
        return claimed

    async def _claim_async(self, free: int) -> list[ClaimedRun]:
        """Claim from the loop, or from a thread when each storage call is a round trip (the
        slots asked for stay reserved meanwhile, so a concurrent refill cannot over-claim)."""
        if not self.app.storage.io_bound or not self.running:
            return self._claim(free)  # nothing running that a round trip on the loop would stall
        app = self.app
        self._reserved += free
        since = time.monotonic()
        self._claim_now = now = app.clock.now()
        try:
            claimed = await asyncio.to_thread(
                app.storage.claim_runs, self.id, self.task_ids, self.queues, free,
                now, app.lease_seconds, self.version, self.unpinned)
        finally:
            self._reserved -= free
        self.started(claimed, free, since=since)
        return claimed

    def _offered(self) -> int:
        return 0  # (the place kept for an offer: worker/offers.py)

    def running_count(self) -> int:
        return len(self.running)

    def claim_delay(self) -> float:
        """How long to let runs gather before a claim. Where each claim is a round trip, while
        attempts run: runs then come while others execute, and each claim (a round trip, and
        a transaction on the server) had better take several. A worker with nothing running
        claims at once: a lone run pays no added latency."""
        if self.app.storage.io_bound:
            return STREAM_DELAY if self.running_count() else 0.0
        return GATHER_DELAY if self.gather_delay() else 0.0

    def frees_slot(self, run_id: str) -> bool:
        """Whether the attempt of `run_id` running here holds a slot of a limited queue (its
        end frees the slot, which a run may be waiting for)."""
        execution = self.running.get(run_id)
        return execution is not None and execution.holds_slot

    def gather_delay(self, run_id: str | None = None) -> float:
        """How long to let endings gather before the commit that writes them (and, on SQLite,
        runs before a claim): nothing when runs come one at a time (no added latency). Where
        each commit is a round trip, STREAM_DELAY while another attempt still runs: its end
        may join the commit (each durable commit is a WAL flush, which the other writers wait
        behind), unless the ending of `run_id` frees a slot of a limited queue (a run may be
        waiting for it). On SQLite, GATHER_DELAY when claims come in quick succession."""
        if self.app.storage.io_bound:
            if self.running_count() < 2 or (run_id is not None and self.frees_slot(run_id)):
                return 0.0
            return STREAM_DELAY
        return GATHER_DELAY if time.monotonic() - self._recent_claims[0] < BUSY_WINDOW else 0.0

    # -- Refill: claiming in the transaction that ends attempts -------------------------------
    def request(self, finishing: int) -> ClaimRequest | None:
        """The claim to make in the transaction that ends `finishing` attempts. Where each call
        is a round trip, only while runs are backing up: a claim that finds nothing would only
        delay that commit, and the wake-ups it sends to callers waiting for results."""
        # (heirs whose hand-over is being committed are about to run: they take places too)
        free = (self.concurrency - len(self.running) - len(self._heirs) - self._reserved
                + finishing - self._offered())
        claim = not (self._stopping or free <= 0
                     or (self.app.storage.io_bound and not self._backlog))
        standby = [] if self._stopping else self.line.wanted(self._holders)
        self._refill_asked = claim
        if not claim and not standby:
            return None
        return self.claim_request(free if claim else 0, standby)

    def started(self, claimed: list[ClaimedRun], asked: int, standby_asked: int = 0,
                since: float | None = None) -> None:
        """Runs claimed by a request sent at `since` (time.monotonic()): their leases count
        from then."""
        self.leases.granted((c.lease for c in claimed), time.monotonic() if since is None else since)
        direct = [c for c in claimed if not c.standby]
        if asked or not standby_asked:
            self._backlog = 0 < asked <= len(direct)
        if self.rated and asked:
            self._rate_follower = not direct
        if standby_asked:
            self.line.granted(len(claimed) - len(direct), standby_asked)
        refill, self._refill_asked = self._refill_asked, False
        if direct:
            self._mark_claims(len(direct), refill)
        for c in claimed:
            if c.standby:
                self.line.add(c)
            else:
                self._start(c, self._limited(c.record.task_id))
        self._trim_line()
        if any(self._limited(c.record.task_id) for c in direct):
            self._line_up()

    def _mark_claims(self, runs: int, refill: bool) -> None:
        """Marks for `gather_delay`: one per claim where storage calls are round trips. On
        SQLite one per run, and enough to be busy at once when the commit that ended attempts
        found runs waiting for the places it freed: runs come faster than attempts end, and
        each commit then had better carry many (every one makes the others wait for the lock;
        a lone run never finds another waiting, so it is never delayed)."""
        marks = 1 if self.app.storage.io_bound else BUSY_CLAIMS if refill else min(runs, BUSY_CLAIMS)
        self._recent_claims.extend([time.monotonic()] * marks)

    def _limited(self, task_id: str) -> bool:
        return self.app.tasks[task_id].queue.concurrency is not None
