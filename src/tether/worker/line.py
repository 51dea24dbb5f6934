"""Runs a worker holds in line for the places it holds in full limited queues.

A run in line is claimed (EXECUTING, leased) but holds no place of its queue's limit. When one
of the worker's runs of that queue and key ends, a run from the line takes its place: the
commit that records the end hands the place over to it (see `Finish.successor`), and it starts
at once if the worker's leases keep the place its own until then (worker/handover.py). This
module only keeps the books: which runs are in line, how many more to ask for, which ones are
extra; the worker starts and hands back runs.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from tether.storage.records import ClaimedRun

# Runs are held in line only for queues whose attempts on this worker last less than this (a
# moving average): a run in line then waits about DEPTH times that at most.
STANDBY_MAX_SECONDS = 0.25

# Runs held in line per place held. They are asked for in the commits that end attempts, one
# batch in flight at a time; a line that runs dry before the commit refilling it returns frees
# the slot for every worker's claims, and the run that takes it has no line either. On
# PostgreSQL under load such a commit took 3-12 ms: in W5 (5 ms attempts) 7-24 % of attempts
# ended with no run in line at 2 per place, 1-6 % at 4.
DEPTH = 4

Place = tuple[str, str]  # (queue, concurrency key)


class Line:
    def __init__(self) -> None:
        self.waiting: dict[Place, collections.deque[ClaimedRun]] = {}
        self.enabled = True
        self.started = 0  # runs started from the line
        self.open = True  # the last ask got all it asked for, or runs were triggered since
        self.renewing: set[str] = set()  # runs in line whose leases are being renewed
        self._durations: dict[str, float] = {}  # queue -> moving average of attempts' seconds

    def add(self, claimed: ClaimedRun) -> None:
        place = (claimed.record.queue, claimed.record.concurrency_key)
        self.waiting.setdefault(place, collections.deque()).append(claimed)

    def granted(self, got: int, asked: int) -> None:
        """After an ask: one that found fewer runs closes the line until runs are triggered."""
        self.open = got >= asked

    def wanted(self, holders: Callable[[], collections.Counter[Place]]
               ) -> list[tuple[str, str, int]]:
        """For each place whose attempts are short, DEPTH runs in line per place held
        (`holders` counts them; called only when the line is open)."""
        if not (self.enabled and self.open):
            return []
        wanted = []
        for (queue, key), held in holders().items():
            if self._durations.get(queue, STANDBY_MAX_SECONDS) < STANDBY_MAX_SECONDS:
                missing = DEPTH * held - len(self.waiting.get((queue, key), ()))
                if missing > 0:
                    wanted.append((queue, key, missing))
        return wanted

    def ended(self, queue: str, seconds: float) -> None:
        """An attempt of `queue` that held a place ended after `seconds`."""
        average = self._durations.get(queue)
        self._durations[queue] = seconds if average is None else 0.8 * average + 0.2 * seconds

    def take(self, place: Place) -> ClaimedRun | None:
        """The next run in line for `place`, if any."""
        line = self.waiting.get(place)
        if not line:
            return None
        self.started += 1
        return line.popleft()

    def __bool__(self) -> bool:
        """Whether any run is in line."""
        return any(self.waiting.values())

    def ids(self) -> list[str]:
        return [c.record.id for line in list(self.waiting.values()) for c in list(line)]

    def drop(self, run_ids: Iterable[str]) -> list[ClaimedRun]:
        """Forget runs no longer held (canceled, lease lost); return those that were here."""
        gone, dropped = set(run_ids), []
        for place, line in list(self.waiting.items()):
            kept = [c for c in line if c.record.id not in gone]
            if len(kept) != len(line):
                dropped += [c for c in line if c.record.id in gone]
                self.waiting[place] = collections.deque(kept)
        return dropped

    def extra(self, holders: collections.Counter[Place]) -> list[ClaimedRun]:
        """Remove and return the runs beyond DEPTH per place held (the newest of each line)."""
        extra = []
        for place, line in self.waiting.items():
            while len(line) > DEPTH * holders.get(place, 0):
                extra.append(line.pop())
        return extra

    def clear(self) -> list[ClaimedRun]:
        everyone = [c for line in self.waiting.values() for c in line]
        self.waiting.clear()
        return everyone
