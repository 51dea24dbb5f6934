"""Flow control at trigger time, for both dialects (issue 22, part 3): a queue's length limit
(`max_queued`) and the "cancel_newest" per-key strategy, applied inside the transaction that
stores new runs, after their rows are written and before it commits.

The caller's transaction is serialized per queue: SQLite holds the write lock; PostgreSQL locks
the rows of the queues that have such settings (`queue_settings(lock=True)`, in name order, as
the transaction's first statement), so the counts read afterwards (each statement of READ
COMMITTED sees what committed before it) include every other trigger of those queues. A queue
without them is read, never locked. Raising `QueueFull` rolls the whole transaction back:
nothing is stored. The connection only needs `execute(sql, params)` returning rows that can be
read by column name (sqlite3.Row, psycopg's dict rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.errors import QueueFull
from tether.storage.queue_records import QueueRecord
from tether.storage.records import NewRun, RunRecord, status_event
from tether.wakeup import after_transition

CANCELED = "CANCELED"
# what needs the transaction's attention (the rest of the per-key strategies act after commit)
CHECKED = "(max_queued IS NOT NULL OR on_key_limit = 'cancel_newest')"


# a key's runs queued or executing, each status through its partial index (runs_keys of
# migration 0017, on SQLite with the status since 0024; runs_executing), never the finished
# runs nor the other keys' backlog
# (SQLite needs the partial index's own condition spelled out to use it; PostgreSQL proves it,
# and estimates better without the repetition)
_QUEUED = {"?": "status IN ('QUEUED', 'DELAYED') AND status = 'QUEUED'", "%s": "status = 'QUEUED'"}
_KEY_COUNT = (
    "SELECT (SELECT count(*) FROM runs WHERE queue = {ph} AND concurrency_key = {ph}"
    " AND {queued})"
    " + (SELECT count(*) FROM runs WHERE queue = {ph} AND concurrency_key = {ph}"
    " AND status = 'EXECUTING') AS n")


@dataclass
class Created:
    """A run the transaction stored (not an idempotency key's or a debounce's earlier run)."""

    new: NewRun
    record: RunRecord


def queue_settings(conn: Any, ph: str, names: list[str], lock: bool) -> dict[str, QueueRecord]:
    """The queues among `names` with a length limit or a cancel_newest strategy; with `lock`
    their rows are locked (PostgreSQL: FOR UPDATE, in name order, so two triggers never wait on
    each other crosswise)."""
    names = sorted(set(names))
    if not names:
        return {}
    marks = ", ".join([ph] * len(names))
    sql = (f"SELECT name, concurrency, max_queued, on_key_limit FROM queues WHERE name IN ({marks})"
           f" AND {CHECKED} ORDER BY name" + (" FOR UPDATE" if lock else ""))
    return {r["name"]: QueueRecord(r["name"], r["concurrency"], max_queued=r["max_queued"],
                                   on_key_limit=r["on_key_limit"])
            for r in conn.execute(sql, names).fetchall()}


def admit(conn: Any, ph: str, settings: dict[str, QueueRecord], created: list[Created],
          now: float) -> list[RunRecord]:
    """Apply the queues' settings to the runs just stored; returns the runs stored CANCELED by
    cancel_newest (their records updated). Raises QueueFull when a queue's waiting runs now
    pass its max_queued."""
    mine = [c for c in created if c.new.queue in settings]
    if not mine:
        return []
    canceled = _cancel_newest(conn, ph, settings, mine, now)
    for name, queue in settings.items():
        if queue.max_queued is None:
            continue
        adding = sum(1 for c in mine if c.new.queue == name and c.record.status in ("QUEUED",
                                                                                   "DELAYED"))
        if not adding:
            continue
        row = conn.execute(f"SELECT count(*) AS n FROM runs WHERE queue = {ph}"
                           " AND status IN ('QUEUED', 'DELAYED')", (name,)).fetchone()
        if row["n"] > queue.max_queued:
            raise QueueFull.of(name, row["n"] - adding, queue.max_queued, adding)
    return canceled


def _cancel_newest(conn: Any, ph: str, settings: dict[str, QueueRecord], mine: list[Created],
                   now: float) -> list[RunRecord]:
    """A new QUEUED run whose key already has `concurrency` runs queued or executing is stored
    CANCELED at once, with the reason; the runs of one batch are taken in order."""
    existing: dict[tuple[str, str], int] = {}
    for c in mine:
        queue = settings[c.new.queue]
        if queue.on_key_limit == "cancel_newest" and queue.concurrency is not None \
                and c.record.status == "QUEUED":
            pair = (c.new.queue, c.new.concurrency_key)
            existing[pair] = existing.get(pair, 0) - 1  # the batch's own are counted below
    for (queue_name, key) in list(existing):
        row = conn.execute(_KEY_COUNT.format(ph=ph, queued=_QUEUED[ph]),
                           (queue_name, key, queue_name, key)).fetchone()
        existing[(queue_name, key)] += row["n"]
    canceled = []
    for c in mine:
        pair = (c.new.queue, c.new.concurrency_key)
        if pair not in existing:
            continue
        limit = settings[c.new.queue].concurrency or 0
        if existing[pair] < limit:
            existing[pair] += 1
            continue
        reason = (f"canceled by queue {c.new.queue!r} (on_key_limit='cancel_newest'): key "
                  f"{c.new.concurrency_key!r} already has {existing[pair]} runs queued or "
                  f"executing, its concurrency is {limit}")
        conn.execute(f"UPDATE runs SET status = 'CANCELED', finished_at = {ph}, updated_at = {ph}"
                     f" WHERE id = {ph}", (now, now, c.new.id))
        conn.execute(f"INSERT INTO events (run_id, at, kind, attempt, name, data) VALUES "
                     f"({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
                     status_event(c.new.id, now, None, CANCELED, reason, c.record.status))
        c.record.status, c.record.finished_at, c.record.updated_at = CANCELED, now, now
        canceled.append(c.record)
    return canceled


def created_runs(runs: list[NewRun], out: list[tuple[RunRecord, bool]]) -> list[Created]:
    return [Created(new, record) for new, (record, is_new) in zip(runs, out, strict=True)
            if is_new and record.id == new.id]


def canceled_wakes(out: list[tuple[RunRecord, bool]]) -> list[tuple[str, str]]:
    """The wake-ups owed for the runs cancel_newest stored CANCELED (their waiters, and a parent
    whose group they end)."""
    return [m for record, created in out if created and record.status == CANCELED
            for m in after_transition(record.id, CANCELED, False, record.parent_id is not None)]
