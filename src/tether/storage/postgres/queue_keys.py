"""A queue's keys in PostgreSQL (a part of PostgresStorage): paused keys listed, paused by hand
and resumed (table paused_keys, migration 0016); per-key depth; a key's runs queued or
executing (the cancel_in_progress strategy). Resuming wakes the workers at commit."""

from __future__ import annotations

from tether.storage.postgres.access import Conn, PgAccess
from tether.storage.queue_records import KeyDepth, PausedKeyRecord
from tether.wakeup import WORKERS

_KEY_DEPTHS = """
SELECT key, sum(queued)::bigint AS queued, sum(executing)::bigint AS executing FROM (
    SELECT concurrency_key AS key, count(*) AS queued, 0 AS executing FROM runs
    WHERE queue = %s AND status = 'QUEUED' GROUP BY concurrency_key
    UNION ALL
    SELECT concurrency_key, 0, count(*) FROM runs WHERE queue = %s AND status = 'EXECUTING'
    GROUP BY concurrency_key) k
GROUP BY key ORDER BY queued DESC, executing DESC, key LIMIT %s"""

_KEY_RUNS = """
SELECT id FROM runs WHERE queue = %s AND concurrency_key = %s AND status = 'QUEUED'
UNION ALL
SELECT id FROM runs WHERE queue = %s AND concurrency_key = %s AND status = 'EXECUTING'
ORDER BY id DESC"""


class QueueKeys(PgAccess):
    """Paused keys, per-key depth and a key's active runs."""

    def list_paused_keys(self, queue: str | None, now: float) -> list[PausedKeyRecord]:
        rows = self._all(
            "SELECT queue, key, until, reason, created_at FROM paused_keys WHERE until > %s"
            " AND (%s::text IS NULL OR queue = %s) ORDER BY queue, key", (now, queue, queue))
        return [PausedKeyRecord(**r) for r in rows]

    def resume_key(self, queue: str, key: str) -> bool:
        def work(conn: Conn) -> bool:
            done = conn.execute("DELETE FROM paused_keys WHERE queue = %s AND key = %s",
                                (queue, key)).rowcount == 1
            if done:
                self._notify(conn, [(WORKERS, "runs")])  # its runs may be claimed now
            return done

        return bool(self._tx(work))

    def key_depths(self, queue: str, limit: int) -> list[KeyDepth]:
        return [KeyDepth(r["key"], r["queued"], r["executing"])
                for r in self._all(_KEY_DEPTHS, (queue, queue, limit))]

    def active_key_runs(self, queue: str, key: str) -> list[str]:
        return [r["id"] for r in self._all(_KEY_RUNS, (queue, key, queue, key))]
