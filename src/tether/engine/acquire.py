"""Taking from a named rate limit inside a run: `ctx.acquire(name, weight)` and
`ctx.step(..., rate_limit=name)`.

A take is atomic in the database (storage.take_rate, GCRA: storage/rates.py). When the limit has
the units now, the call goes on at once. When they come free within `INLINE_WAIT` seconds, they
are reserved for that moment and the run waits in process, keeping its lease (its heartbeats go
on); the lease is checked by the worker's own clock after the wait, before anything starts. A
longer wait takes nothing and parks the run like a durable sleep (WAITING, its worker and queue
slots free) until the units should be there; the run then replays to the same call and takes
again. `ctx.acquire` is a durable call of its own ("acquire:<name>"): once taken, a replay returns
at once and takes nothing again; a step with a `rate_limit` takes only when its function is
about to be called, so a completed step never takes again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tether.engine.scope import COMPLETED, RunScope
from tether.engine.waits import SLEEP, Suspend
from tether.rate_limits import check_name, check_weight

INLINE_WAIT = 2.0  # seconds a run waits for capacity in process; longer, it parks
ACQUIRE = "acquire"  # the kind of the row `ctx.acquire` stores


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def take(scope: RunScope, name: str, weight: float) -> float:
    """Take `weight` units of the limit `name`: the seconds to wait in process before using
    them (0: at once). Raises Suspend to park the run when they are further away."""
    now = scope.clock.now()
    result = scope.storage.take_rate(name, weight, now, INLINE_WAIT)
    if result.granted:  # (counted from after the round trip: the units' moment is absolute)
        return max(0.0, result.at - scope.clock.now())
    raise Suspend(result.at, SLEEP, None,
                  f"waiting for rate limit {name!r} until {_iso(result.at)}")


class Acquire:
    """One `ctx.acquire` call: its stored row if an earlier pass took already; otherwise the
    take (`wait()` seconds to wait in process, then `done()`)."""

    def __init__(self, scope: RunScope, name: str, weight: float) -> None:
        self.scope = scope
        self.name = check_name(name)
        self.weight = check_weight(weight)
        self.key, stored = scope.locate(f"acquire:{self.name}")
        self.done = stored is not None and stored.status == COMPLETED
        self.started = scope.clock.now()

    def wait(self) -> float:
        """Take from the limit (the lease checked first: taking is work); seconds to wait."""
        self.scope.check()
        return take(self.scope, self.name, self.weight)

    def taken(self) -> None:
        """After the wait: the lease is still held (by the worker's own clock), and the take is
        stored so a replay does not take again."""
        self.scope.check()
        scope, now = self.scope, self.scope.clock.now()
        scope.save(scope.row(self.key, f"acquire:{self.name}", ACQUIRE, COMPLETED,
                             json.dumps({"weight": self.weight}), None, self.started, now))
