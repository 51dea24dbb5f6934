"""Claiming runs on SQLite. The write lock serializes claims across processes, so counting the
executing runs of each queue and choosing candidates in one transaction keeps limits exact."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from tether.clock import Clock, new_id
from tether.storage.records import ClaimedRun, ClaimRequest, Lease
from tether.storage.sqlite.rows import run_records

_ROUNDS = 3


def _limits(conn: sqlite3.Connection) -> tuple[dict[str, int], list[str]]:
    limits: dict[str, int] = {}
    paused: list[str] = []
    for name, concurrency, is_paused in conn.execute("SELECT name, concurrency, paused FROM queues"):
        if concurrency is not None:
            limits[name] = concurrency
        if is_paused:
            paused.append(name)
    return limits, paused


def _paused_keys(conn: sqlite3.Connection, now: float) -> list[tuple[str, str]]:
    """(queue, key) of the keys paused by back-pressure at `now` (none: one index probe)."""
    return [(q, k) for q, k in conn.execute(
        "SELECT queue, key FROM paused_keys WHERE until > ?", (now,))]


def _candidates(
    conn: sqlite3.Connection, req: ClaimRequest, paused: list[str], full: list[tuple[str, str]],
    fetch: int, place: tuple[str, str] | None = None, held: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str, str, int]]:
    """Ready runs in claim order; `place` (queue, key): only that queue and key; `held`: the
    paused (queue, key) pairs, whose runs are left out (a run's key: its rate key, else its
    concurrency key)."""
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
    sql = (f"SELECT id, queue, concurrency_key, started_at IS NOT NULL FROM runs INDEXED BY runs_ready "
           f"WHERE {' AND '.join(where)} ORDER BY priority DESC, available_at, id LIMIT ?")
    return conn.execute(sql, [*params, fetch]).fetchall()


def now_in_lock(req: ClaimRequest, clock: Clock | None) -> ClaimRequest:
    """The claim's time read again once the write lock is held: the caller read it before
    waiting for the lock, maybe before the commit that ended the run whose place it takes. Read
    after, a claimed run never starts, as stored, before the run it follows ended."""
    return req if clock is None else replace(req, now=max(req.now, clock.now()))


Ready = list[tuple[str, str, str, int]]  # (id, queue, concurrency key, started before)


def ready_now(conn: sqlite3.Connection, req: ClaimRequest) -> Ready:
    """The runs a claim would take, read before the write lock is taken (a read, no lock in
    WAL mode): nothing under the lock but the claim itself when none of them counts against
    a limit (`claim_ready`). Empty: nothing to claim (runs of paused keys left out, so a
    backlog of them costs no write lock)."""
    return _candidates(conn, req, [], [], req.limit, held=_paused_keys(conn, req.now))


def claim_ready(conn: sqlite3.Connection, req: ClaimRequest, ready: Ready,
                claim_sql: str) -> Taken:
    """Run inside a write transaction: claim the runs `ready_now` read, unless one of them is
    in a queue with a limit or paused (then as `claim` does, counting under the lock). A run
    claimed by another worker meanwhile is not taken (the claim statement checks its status);
    one triggered meanwhile waits for the next claim."""
    limits, paused = _limits(conn)
    if any(queue in limits or queue in paused for _, queue, _, _ in ready) or (
            _paused_keys(conn, req.now)):
        return claim(conn, req, claim_sql)
    return _take(conn, req, {run_id: bool(resumed) for run_id, _, _, resumed in ready},
                 claim_sql, standby=False)


def _pick(conn: sqlite3.Connection, req: ClaimRequest) -> list[tuple[str, bool]]:
    limits, paused = _limits(conn)
    held = _paused_keys(conn, req.now)
    counts: dict[tuple[str, str], int] = {}
    if limits:
        for queue, key, n in conn.execute(
            "SELECT queue, concurrency_key, count(*) FROM runs WHERE status = 'EXECUTING' "
            "AND in_line = 0 GROUP BY 1, 2"
        ):
            counts[(queue, key)] = n
    picked: list[tuple[str, bool]] = []
    chosen: set[str] = set()
    for _ in range(_ROUNDS):
        full = [pair for pair, n in counts.items() if pair[0] in limits and n >= limits[pair[0]]]
        want = req.limit - len(picked)
        rows = _candidates(conn, req, paused, full, want * 4 + len(chosen), held=held)
        skipped = False
        for run_id, queue, key, resumed in rows:
            if run_id in chosen:
                continue
            limit = limits.get(queue)
            if limit is not None:
                if counts.get((queue, key), 0) >= limit:
                    skipped = True
                    continue
                counts[(queue, key)] = counts.get((queue, key), 0) + 1
            picked.append((run_id, bool(resumed)))
            chosen.add(run_id)
            if len(picked) >= req.limit:
                return picked
        if not skipped:
            break
    return picked


def claim(conn: sqlite3.Connection, req: ClaimRequest, claim_sql: str) -> Taken:
    """Run inside a write transaction. The move to EXECUTING is recorded by the run row itself
    (attempt_started_at, worker_id) and, once the attempt ends, by its attempt row."""
    return _take(conn, req, dict(_pick(conn, req)), claim_sql, standby=False)


def claim_in_line(conn: sqlite3.Connection, req: ClaimRequest, claim_sql: str) -> Taken:
    """Runs held in line (`req.standby`: up to n per queue and key), in claim order; they are
    marked in_line, so no limit counts them."""
    _, paused = _limits(conn)
    held = _paused_keys(conn, req.now)
    picked: dict[str, bool] = {}
    for queue, key, n in req.standby:
        if queue not in paused and n > 0:
            rows = _candidates(conn, req, [], [], n, place=(queue, key), held=held)
            picked.update((run_id, bool(resumed)) for run_id, _, _, resumed in rows)
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
          standby: bool) -> Taken:
    if not picked:
        return NOTHING
    token = new_id("lease")
    now = req.now
    sql = f"{claim_sql} ({','.join('?' * len(picked))}) RETURNING *"
    cursor = conn.execute(
        sql,
        # a run held in line has not started: its started_at is set when it takes a place
        [token, now + req.lease_seconds, req.worker_id, now, now, req.version,
         None if standby else now, int(standby), *picked])
    return Taken(sql, cursor, cursor.fetchall(), token, req.worker_id, picked, standby)
