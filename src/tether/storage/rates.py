"""Named rate limits as both backends store them, and the GCRA arithmetic they share.

A limit of `limit` units per `period` seconds spaces units `period / limit` seconds apart (the
emission interval); `burst` units may be taken at once. Its bucket keeps one number, the
theoretical arrival time (`tat`): the time at which the bucket would be empty again. Taking
`weight` units moves it to `max(tat, now) + weight * interval`; that is allowed once the new
`tat` is at most `burst * interval` ahead of the moment the units are used. So a bucket never
lets more than `burst` units go at once, nor more than `limit` per `period` in the long run.

The backends read the limit and its bucket, call `take` and write the new `tat` in one
transaction (SQLite: under the write lock; PostgreSQL: with the bucket row locked), so takes from
any number of workers are serialized and the limit holds across all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

SLACK = 1e-6  # seconds: sums of floats that should meet are not refused by a rounding error


@dataclass(frozen=True)
class LimitRecord:
    """A row of rate_limits: `limit` units per `period` seconds, `burst` at once."""

    name: str
    limit: float
    period: float
    burst: float
    updated_at: float

    @property
    def interval(self) -> float:
        """Seconds between two units at the steady rate."""
        return self.period / self.limit


@dataclass(frozen=True)
class Take:
    """What a take from a named limit came to. `granted`: the units are taken, to be used at
    `at` (now, or a moment within the caller's `max_wait`). Otherwise nothing was taken, and
    `at` is the earliest time a take of the same weight could be granted."""

    granted: bool
    at: float
    tat: float  # the bucket's arrival time after the take (unchanged when not granted)


def take(limit: LimitRecord, tat: float | None, weight: float, now: float,
         max_wait: float) -> Take:
    """Take `weight` units at `now` or, when the bucket is short, reserve them for the moment
    it has them if that is at most `max_wait` seconds away. `tat`: the bucket's stored arrival
    time (None: never used). The caller made sure that `weight <= limit.burst`."""
    interval = limit.interval
    start = now if tat is None else max(tat, now)
    after = start + weight * interval
    at = max(now, after - limit.burst * interval)  # when the units fit under the burst
    if at - now <= max_wait + SLACK:
        return Take(True, at, after)
    return Take(False, at, now if tat is None else tat)
