"""Time and ids, injected so that backoff, leases and expiry can be tested without sleeping."""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        """The clock's time, in seconds since the epoch."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds

    def set(self, ts: float) -> None:
        """Set the clock's time."""
        with self._lock:
            self._now = ts


_last = [0, 0]
_id_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """A time-ordered unique id: prefix + 10 chars of milliseconds + 16 random chars.

    Ids made in one process are strictly increasing, so `ORDER BY id` is creation order.
    """
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms = _last[0]
            rand = _last[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last[0], _last[1] = ms, rand
    return f"{prefix}_{_encode_id(ms, rand)}"


# base32 of the 130 bits (ms << 80 | rand), MSB first, spelled with _CROCKFORD, ten bits (two
# characters) at a time from a table: one id per trigger, per attempt and per claim
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def id_seconds(made_id: str) -> float | None:
    """When `new_id` made `made_id` (seconds since the epoch, to the millisecond); None for an
    id it did not make."""
    body = made_id.rpartition("_")[2]
    if len(body) != 26:
        return None
    ms = 0
    for char in body[:10]:
        digit = _CROCKFORD.find(char)
        if digit < 0:
            return None
        ms = ms << 5 | digit
    return ms / 1000


def _encode_id(ms: int, rand: int) -> str:
    p, hi, lo = _PAIRS, ms & (1 << 50) - 1, rand & (1 << 80) - 1
    return (p[hi >> 40] + p[hi >> 30 & 1023] + p[hi >> 20 & 1023] + p[hi >> 10 & 1023]
            + p[hi & 1023] + p[lo >> 70] + p[lo >> 60 & 1023] + p[lo >> 50 & 1023]
            + p[lo >> 40 & 1023] + p[lo >> 30 & 1023] + p[lo >> 20 & 1023] + p[lo >> 10 & 1023]
            + p[lo & 1023])


def id_floor(prefix: str, at: float) -> str:
    """The smallest id `new_id(prefix)` could make at time `at` (epoch seconds): every id made
    before `at` sorts below it, so "made before" is a prefix of an id-ordered index."""
    return f"{prefix}_{_encode_id(max(int(at * 1000), 0), 0)}"
