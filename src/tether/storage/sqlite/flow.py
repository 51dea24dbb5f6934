"""Flow control in SQLite's claim (claim.py), under the write lock: each queue's rules as stored
(concurrency per key, total_concurrency, rate limit, paused), its rate buckets (GCRA rows of
rate_buckets, read once per claim and written as units are taken), and the turns its keys take
for free places (queue_turns: the key served last)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from tether.storage.records import ClaimRequest


@dataclass(frozen=True)
class Rate:
    interval: float  # seconds between units at the steady rate: period / limit
    tolerance: float  # how far ahead of now the bucket may be: (burst - 1) * interval
    scope: str  # "queue", "concurrency_key" or "payload"

    def bucket(self, key: str, rate_key: str | None) -> str:
        """The bucket key of a run of the queue with this concurrency key and rate key."""
        if self.scope == "queue":
            return ""
        return key if self.scope == "concurrency_key" else (rate_key or key)


@dataclass
class Rules:
    limits: dict[str, int] = field(default_factory=dict)  # concurrency per key
    totals: dict[str, int] = field(default_factory=dict)  # total_concurrency
    rates: dict[str, Rate] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)

    def shapes(self, queue: str) -> bool:
        """Whether the claim counts, rates or turns anything for runs of this queue."""
        return (queue in self.limits or queue in self.rates or queue in self.paused)


def rules(conn: sqlite3.Connection) -> Rules:
    found = Rules()
    for name, concurrency, paused, limit, period, burst, scope, total in conn.execute(
            "SELECT name, concurrency, paused, rate_limit, rate_period, rate_burst, rate_scope, "
            "total_concurrency FROM queues"):
        if concurrency is not None:
            found.limits[name] = concurrency
        if total is not None and concurrency is not None:
            found.totals[name] = total
        if limit is not None and limit > 0 and period:
            interval = period / limit
            found.rates[name] = Rate(interval, max(0.0, (burst or 1) - 1) * interval,
                                     scope or "queue")
        if paused:
            found.paused.append(name)
    return found


class Buckets:
    """The rate buckets of the queues with a rate limit, as this claim sees and moves them."""

    def __init__(self, conn: sqlite3.Connection, rates: dict[str, Rate], now: float) -> None:
        self.conn = conn
        self.rates = rates
        self.now = now
        self.tat: dict[tuple[str, str], float] = {}
        self.moved: set[tuple[str, str]] = set()
        if rates:
            # only the buckets that can hold a run back or keep a beat: the others (tat an
            # interval or more behind now) act as fresh ones
            names = [f"queue:{q}" for q in rates]
            for name, key, tat in conn.execute(
                    f"SELECT b.name, b.key, b.tat FROM rate_buckets b JOIN queues q "
                    f"ON b.name = 'queue:' || q.name WHERE b.name IN "
                    f"({','.join('?' * len(names))}) AND q.rate_limit > 0 "
                    f"AND b.tat > ? - q.rate_period / q.rate_limit", [*names, now]):
                self.tat[(name[6:], key)] = tat

    def room(self, queue: str, bucket: str) -> bool:
        rate = self.rates[queue]
        return self.tat.get((queue, bucket), self.now) - rate.tolerance <= self.now

    def take(self, queue: str, bucket: str) -> None:
        """Move the bucket on by one interval: from its tat when the claim is late by less than
        one (it keeps the beat), else from now (see the PostgreSQL migration 0017)."""
        interval = self.rates[queue].interval
        tat = self.tat.get((queue, bucket), self.now)
        self.tat[(queue, bucket)] = (tat if self.now < tat + interval else self.now) + interval
        self.moved.add((queue, bucket))

    def save(self) -> None:
        """Write the buckets this claim moved (one row each, however many runs it took)."""
        if self.moved:
            self.conn.executemany(
                "INSERT INTO rate_buckets (name, key, tat) VALUES (?, ?, ?) "
                "ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat",
                [(f"queue:{queue}", bucket, self.tat[(queue, bucket)])
                 for queue, bucket in self.moved])

    def held(self) -> list[tuple[str, str]]:
        """(queue, bucket key) pairs out of rate now."""
        return [pair for pair in self.tat if not self.room(*pair)]


def turn_of(conn: sqlite3.Connection, queue: str) -> str:
    row = conn.execute("SELECT key FROM queue_turns WHERE queue = ?", (queue,)).fetchone()
    return "" if row is None else str(row[0])


def save_turn(conn: sqlite3.Connection, queue: str, key: str) -> None:
    conn.execute("INSERT INTO queue_turns (queue, key) VALUES (?, ?) "
                 "ON CONFLICT (queue) DO UPDATE SET key = excluded.key", (queue, key))


Found = tuple[str, str, str | None, int]  # (id, concurrency key, rate key, started before)


def next_in_turn(conn: sqlite3.Connection, req: ClaimRequest, queue: str, after: str | None,
                 chosen: set[str]) -> Found | None:
    """The first ready run (in claim order) of the queue's first key after `after` (None: of
    its first key)."""
    where = ["queue = ?", "status IN ('QUEUED', 'DELAYED')", "available_at <= ?",
             "(expires_at IS NULL OR expires_at > ?)",
             f"+task_id IN ({','.join('?' * len(req.task_ids))})"]
    params: list[object] = [queue, req.now, req.now, *req.task_ids]
    if after is not None:
        where.append("concurrency_key > ?")
        params.append(after)
    if chosen:
        where.append(f"id NOT IN ({','.join('?' * len(chosen))})")
        params += chosen
    if req.version is not None:
        where.append(f"(version IS NULL OR version = ? OR +task_id IN "
                     f"({','.join('?' * len(req.unpinned))}) OR NOT EXISTS "
                     f"(SELECT 1 FROM steps s WHERE s.run_id = runs.id))")
        params += [req.version, *req.unpinned]
    row = conn.execute(
        f"SELECT id, concurrency_key, rate_key, started_at IS NOT NULL FROM runs INDEXED BY "
        f"runs_keys WHERE {' AND '.join(where)} "
        f"ORDER BY queue, concurrency_key, priority DESC, available_at, id LIMIT 1", params
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def others_waiting(conn: sqlite3.Connection, queue: str, key: str, now: float) -> bool:
    """Whether a neighbouring key of the queue (the next one below or above in key order) has a
    ready run and none executing: it waits for its turn, which a line of this key would keep
    taking."""
    for op, order in (("<", "DESC"), (">", "ASC")):
        row = conn.execute(
            f"SELECT concurrency_key FROM runs INDEXED BY runs_keys WHERE queue = ? "
            f"AND concurrency_key {op} ? AND status IN ('QUEUED', 'DELAYED') AND available_at <= ? "
            f"ORDER BY queue {order}, concurrency_key {order} LIMIT 1", (queue, key, now)).fetchone()
        if row is not None and conn.execute(
                "SELECT 1 FROM runs INDEXED BY runs_executing WHERE queue = ? "
                "AND concurrency_key = ? AND status = 'EXECUTING' LIMIT 1",
                (queue, row[0])).fetchone() is None:
            return True
    return False
