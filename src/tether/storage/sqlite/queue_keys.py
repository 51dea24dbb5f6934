"""A queue's keys in SQLite (a part of SQLiteStorage): paused keys listed, paused by hand and
resumed (table paused_keys, migration 0016); per-key depth; a key's runs queued or executing
(the cancel_in_progress strategy). Resuming wakes the workers after the commit."""

from __future__ import annotations

from tether.storage.queue_records import KeyDepth, PausedKeyRecord
from tether.storage.sqlite.access import SQLiteAccess
from tether.wakeup import WORKERS

# `status IN (...) AND status = 'QUEUED'` lets the planner use the partial indexes runs_keys
# (its status column since 0024) and runs_executing without reading finished runs; a key's runs
# name their indexes, which a database never analyzed would pass over for runs_queue
_KEY_DEPTHS = """
SELECT key, sum(queued) AS queued, sum(executing) AS executing FROM (
    SELECT concurrency_key AS key, count(*) AS queued, 0 AS executing FROM runs
    WHERE queue = ? AND status IN ('QUEUED', 'DELAYED') AND status = 'QUEUED'
    GROUP BY concurrency_key
    UNION ALL
    SELECT concurrency_key, 0, count(*) FROM runs WHERE queue = ? AND status = 'EXECUTING'
    GROUP BY concurrency_key)
GROUP BY key ORDER BY queued DESC, executing DESC, key LIMIT ?"""

_KEY_RUNS = """
SELECT id FROM runs INDEXED BY runs_keys WHERE queue = ? AND concurrency_key = ?
    AND status IN ('QUEUED', 'DELAYED') AND status = 'QUEUED'
UNION ALL
SELECT id FROM runs INDEXED BY runs_executing WHERE queue = ? AND concurrency_key = ?
    AND status = 'EXECUTING'
ORDER BY id DESC"""


class QueueKeys(SQLiteAccess):
    """Paused keys, per-key depth and a key's active runs."""

    def list_paused_keys(self, queue: str | None, now: float) -> list[PausedKeyRecord]:
        sql = "SELECT queue, key, until, reason, created_at FROM paused_keys WHERE until > ?"
        params: tuple[object, ...] = (now,)
        if queue is not None:
            sql, params = sql + " AND queue = ?", (now, queue)
        return [PausedKeyRecord(*r) for r in self._read(sql + " ORDER BY queue, key", params)]

    def resume_key(self, queue: str, key: str) -> bool:
        done = self._write_one("DELETE FROM paused_keys WHERE queue = ? AND key = ?",
                               (queue, key)) == 1
        if done:
            self.bus.publish(WORKERS, "runs")  # its runs may be claimed now
        return done

    def key_depths(self, queue: str, limit: int) -> list[KeyDepth]:
        return [KeyDepth(r[0], r[1], r[2]) for r in self._read(_KEY_DEPTHS, (queue, queue, limit))]

    def active_key_runs(self, queue: str, key: str) -> list[str]:
        return [r[0] for r in self._read(_KEY_RUNS, (queue, key, queue, key))]
