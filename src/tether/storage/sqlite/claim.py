"""Claiming runs on SQLite. The write lock serializes claims across processes, so counting the
executing runs of each queue and choosing candidates in one transaction keeps limits exact;
rate buckets and the keys' turns (flow.py) are read and moved in that same transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from tether.clock import Clock, new_id
from tether.storage.records import ClaimedRun, ClaimRequest, Lease
from tether.storage.sqlite.flow import (
    Buckets,
    next_in_turn,
    others_waiting,
    rules,
    save_turn,
    turn_of,
)
from tether.storage.sqlite.rows import run_records

_ROUNDS = 3
_TURNS = 64  # keys a queue's turn looks at, at most, for a run with a place and rate to start
Ready = list[tuple[str, str, str, int, str | None]]  # (id, queue, concurrency key,
# started before, rate key)


def _paused_keys(conn: sqlite3.Connection, now: float) -> list[tuple[str, str]]:
    """(queue, key) of the keys paused by back-pressure at `now` (none: one index probe). A
    run's key is its rate key, else its concurrency key."""
    return [(q, k) for q, k in conn.execute(
        "SELECT queue, key FROM paused_keys WHERE until > ?", (now,))]


def _candidates(
    conn: sqlite3.Connection, req: ClaimRequest, paused: list[str], full: list[tuple[str, str]],
    fetch: int, place: tuple[str, str] | None = None, held: list[tuple[str, str]] | None = None,
) -> Ready:
    """Ready runs in claim order; `place` (queue, key): only that queue and key; `held`:
    (queue, key) pairs left out, a run's key being its rate key, else its concurrency key (out
    of rate, or paused)."""
    where = ["status IN ('QUEUED', 'DELAYED')", "available_at <= ?",
             "(expires_at IS NULL OR expires_at > ?)"]
    params: list[object] = [req.now, req.now]
    where.append(f"+task_id IN ({','.join('?' * len(req.task_ids))})")
    params += req.task_ids
    if req.queues is not None:
        where.append(f"+queue IN ({','.join('?' * len(req.queues))})")
        params += req.queues
    if paused:
        where.append(f"queue NOT IN ({','.join('?' * len(paused))})")
        params += paused
    if full:
        where.append(f"(queue, concurrency_key) NOT IN (VALUES {','.join(['(?,?)'] * len(full))})")
        for pair in full:
            params += pair
    if held:
        where.append(f"(queue, coalesce(rate_key, concurrency_key)) NOT IN "
                     f"(VALUES {','.join(['(?,?)'] * len(held))})")
        for pair in held:
            params += pair
    if place is not None:
        where.append("+queue = ? AND +concurrency_key = ?")
        params += place
    if req.version is not None:
        # pinned: a run with durable history goes on on a worker of its own version
        where.append(f"(version IS NULL OR version = ? OR +task_id IN "
                     f"({','.join('?' * len(req.unpinned))}) OR NOT EXISTS "
                     f"(SELECT 1 FROM steps s WHERE s.run_id = runs.id))")
        params += [req.version, *req.unpinned]
    sql = (f"SELECT id, queue, concurrency_key, started_at IS NOT NULL, rate_key FROM runs "
           f"INDEXED BY runs_ready WHERE {' AND '.join(where)} "
           f"ORDER BY priority DESC, available_at, id LIMIT ?")
    return conn.execute(sql, [*params, fetch]).fetchall()


def now_in_lock(req: ClaimRequest, clock: Clock | None) -> ClaimRequest:
    """The claim's time read again once the write lock is held: the caller read it before
    waiting for the lock, maybe before the commit that ended the run whose place it takes. Read
    after, a claimed run never starts, as stored, before the run it follows ended."""
    return req if clock is None else replace(req, now=max(req.now, clock.now()))




def ready_now(conn: sqlite3.Connection, req: ClaimRequest) -> Ready:
    """The runs a claim would take, read before the write lock is taken (a read, no lock in
    WAL mode): nothing under the lock but the claim itself when none of them counts against
    a limit (`claim_ready`). Empty: nothing to claim (runs of paused keys left out, so a
    backlog of them costs no write lock)."""
    return _candidates(conn, req, [], [], req.limit, held=_paused_keys(conn, req.now))


# The fast claim's guard, in its statement: a run is taken only if its queue has no limit, rate
# or pause, and no key is paused anywhere (as `Rules.shapes` and `_paused_keys` read them)
_UNSHAPED = (
    " AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = runs.queue AND (q.concurrency IS NOT"
    " NULL OR q.paused OR (q.rate_limit > 0 AND q.rate_period)))"
    " AND NOT EXISTS (SELECT 1 FROM paused_keys WHERE until > ?)")


def claim_ready(conn: sqlite3.Connection, req: ClaimRequest, ready: Ready,
                claim_sql: str) -> list[Taken]:
    """Run inside a write transaction: claim the runs `ready_now` read in one statement, which
    takes only those no limit, rate or pause concerns (checked by the statement itself: no
    read of the rules before it). When it took fewer than `ready` (a run of a limited queue, a
    paused key, or a run another worker claimed meanwhile), `claim` fills the places left,
    counting under the lock. A run triggered meanwhile waits for the next claim."""
    picked = {run_id: bool(resumed) for run_id, _, _, resumed, _ in ready}
    fast = _take(conn, req, picked, claim_sql, standby=False, guard=(_UNSHAPED, req.now))
    left = min(req.limit, len(ready)) - len(fast.rows)
    if left <= 0:
        return [fast]
    return [fast, claim(conn, replace(req, limit=left), claim_sql)]


class _Picking:
    """One claim's choice of runs: places counted per key and per queue, rate buckets, turns."""

    def __init__(self, conn: sqlite3.Connection, req: ClaimRequest) -> None:
        self.conn, self.req = conn, req
        self.rules = found = rules(conn)
        self.counts: dict[tuple[str, str], int] = {}
        self.totals: dict[str, int] = {}
        if found.limits:
            for queue, key, n in conn.execute(
                "SELECT queue, concurrency_key, count(*) FROM runs WHERE status = 'EXECUTING' "
                "AND in_line = 0 GROUP BY 1, 2"
            ):
                self.counts[(queue, key)] = n
                self.totals[queue] = self.totals.get(queue, 0) + n
        self.buckets = Buckets(conn, found.rates, req.now)
        self.paused_keys = set(_paused_keys(conn, req.now))  # back-pressure's pauses
        self.turns: dict[str, str] = {}  # queue -> the key served last
        self.done: set[str] = set()  # queues whose keys have no run to give any more
        self.moved: set[str] = set()
        self.picked: list[tuple[str, bool]] = []
        self.chosen: set[str] = set()

    def excluded(self) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
        """What the candidates leave out: queues (paused, all places or all rate taken), (queue,
        key) pairs without a place, (queue, rate key) pairs out of rate."""
        found = self.rules
        queues = list(found.paused)
        queues += [q for q, total in found.totals.items() if self.totals.get(q, 0) >= total]
        full = [pair for pair, n in self.counts.items()
                if pair[0] in found.limits and n >= found.limits[pair[0]]]
        held: list[tuple[str, str]] = []
        for queue, bucket in self.buckets.held():
            scope = found.rates[queue].scope
            if scope == "queue":
                queues.append(queue)
            elif scope == "concurrency_key":
                full.append((queue, bucket))
            else:
                held.append((queue, bucket))
        return queues, full, held + sorted(self.paused_keys)

    def admit(self, run_id: str, queue: str, key: str, rate_key: str | None,
              resumed: int) -> bool:
        """Take the run if its key is not paused, its key and queue have a place and its bucket
        has room."""
        if (queue, key if rate_key is None else rate_key) in self.paused_keys:
            return False
        found = self.rules
        limit = found.limits.get(queue)
        if limit is not None and (self.counts.get((queue, key), 0) >= limit or (
                queue in found.totals and self.totals.get(queue, 0) >= found.totals[queue])):
            return False
        rate = found.rates.get(queue)
        if rate is not None:
            bucket = rate.bucket(key, rate_key)
            if not self.buckets.room(queue, bucket):
                return False
            self.buckets.take(queue, bucket)
        if limit is not None:
            self.counts[(queue, key)] = self.counts.get((queue, key), 0) + 1
            self.totals[queue] = self.totals.get(queue, 0) + 1
        self.picked.append((run_id, bool(resumed)))
        self.chosen.add(run_id)
        return True

    def in_turn(self, queue: str) -> None:
        """The queue's turn: its next key in turn (after the one served last, round and round)
        gives its first ready run, passing over keys without a place or rate."""
        if queue in self.done:
            return
        last = self.turns.get(queue)
        if last is None:
            last = self.turns[queue] = turn_of(self.conn, queue)
        after: str | None = last
        wrapped = False
        for _ in range(_TURNS):
            found = next_in_turn(self.conn, self.req, queue, after, self.chosen)
            if found is None:
                if wrapped or after is None:
                    break
                wrapped, after = True, None  # round again from the first key
                continue
            run_id, key, rate_key, resumed = found
            if wrapped and key > last:
                break  # the keys past the one served last were tried already
            after = key
            if self.admit(run_id, queue, key, rate_key, resumed):
                self.turns[queue] = key
                self.moved.add(queue)
                return
            if queue in self.rules.totals and \
                    self.totals.get(queue, 0) >= self.rules.totals[queue]:
                break
        self.done.add(queue)

    def save(self) -> None:
        self.buckets.save()
        for queue in self.moved:
            save_turn(self.conn, queue, self.turns[queue])


def _pick(conn: sqlite3.Connection, req: ClaimRequest) -> list[tuple[str, bool]]:
    picking = _Picking(conn, req)
    limits = picking.rules.limits
    for _ in range(_ROUNDS):
        queues, full, held = picking.excluded()
        want = req.limit - len(picking.picked)
        rows = _candidates(conn, req, queues, full, want * 4 + len(picking.chosen), held=held)
        skipped = False
        for run_id, queue, key, resumed, rate_key in rows:
            if run_id in picking.chosen:
                continue
            if queue in limits:
                before = len(picking.picked)
                picking.in_turn(queue)
                skipped |= len(picking.picked) == before
            elif not picking.admit(run_id, queue, key, rate_key, resumed):
                skipped = True
            if len(picking.picked) >= req.limit:
                break
        if not skipped or len(picking.picked) >= req.limit:
            break
    picking.save()
    return picking.picked


def claim(conn: sqlite3.Connection, req: ClaimRequest, claim_sql: str) -> Taken:
    """Run inside a write transaction. The move to EXECUTING is recorded by the run row itself
    (attempt_started_at, worker_id) and, once the attempt ends, by its attempt row."""
    return _take(conn, req, dict(_pick(conn, req)), claim_sql, standby=False)


def claim_in_line(conn: sqlite3.Connection, req: ClaimRequest, claim_sql: str) -> Taken:
    """Runs held in line (`req.standby`: up to n per queue and key), in claim order; they are
    marked in_line, so no limit counts them."""
    found = rules(conn)
    picked: dict[str, bool] = {}
    for queue, key, n in req.standby:
        # none for a rate-limited queue (a run in line would start outside the rate check),
        # nor while a neighbouring key waits for its turn (flow.others_waiting)
        if queue not in found.paused and queue not in found.rates and n > 0 \
                and not others_waiting(conn, queue, key, req.now):
            rows = _candidates(conn, req, [], [], n, place=(queue, key),
                               held=_paused_keys(conn, req.now))
            picked.update((run_id, bool(resumed)) for run_id, _, _, resumed, _ in rows)
    return _take(conn, req, picked, claim_sql, standby=True)


@dataclass
class Taken:
    """The runs one claim statement moved to EXECUTING, as it returned them. They become
    ClaimedRuns (`runs()`) once the transaction committed: no Python work under the write lock
    that can wait until after it."""

    sql: str
    cursor: sqlite3.Cursor | None
    rows: list[Any]
    token: str
    worker_id: str
    picked: dict[str, bool]  # run id -> resumed, in claim order
    standby: bool

    def runs(self) -> list[ClaimedRun]:
        if not self.rows or self.cursor is None:
            return []
        records = {r.id: r for r in run_records(self.sql, self.cursor, self.rows)}
        return [ClaimedRun(record, Lease(run_id, self.token, record.attempts, self.worker_id),
                           resumed, self.standby)
                for run_id, resumed in self.picked.items()
                if (record := records.get(run_id)) is not None]


NOTHING = Taken("", None, [], "", "", {}, False)


def _take(conn: sqlite3.Connection, req: ClaimRequest, picked: dict[str, bool], claim_sql: str,
          standby: bool, guard: tuple[str, float] | None = None) -> Taken:
    """Claim the `picked` runs still ready; `guard`: a condition more (with its parameter)."""
    if not picked:
        return NOTHING
    token = new_id("lease")
    now = req.now
    more, extra = (guard[0], [guard[1]]) if guard is not None else ("", [])
    sql = f"{claim_sql} ({','.join('?' * len(picked))}){more} RETURNING *"
    cursor = conn.execute(
        sql,
        # a run held in line has not started: its started_at is set when it takes a place
        [token, now + req.lease_seconds, req.worker_id, now, now, req.version,
         None if standby else now, int(standby), *picked, *extra])
    return Taken(sql, cursor, cursor.fetchall(), token, req.worker_id, picked, standby)
