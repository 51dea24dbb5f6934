"""Named rate limits and paused keys in SQLite (a part of SQLiteStorage): the limits' rows, takes
from their buckets (read, computed and written under the write lock: serialized across every
process sharing the file), and pausing a queue's key (back-pressure)."""

from __future__ import annotations

import sqlite3

from tether.errors import ConfigurationError, UnknownRateLimit
from tether.storage.rates import LimitRecord, Take, take
from tether.storage.sqlite.access import SQLiteAccess
from tether.wakeup import WORKERS

_LIMIT = 'SELECT name, "limit", period, burst, updated_at FROM rate_limits'


def _record(row: sqlite3.Row | tuple[object, ...]) -> LimitRecord:
    name, limit, period, burst, updated_at = tuple(row)
    return LimitRecord(str(name), float(limit), float(period), float(burst),
                       float(updated_at))


class RateParts(SQLiteAccess):
    """Named limits, their buckets, and paused keys."""

    def set_rate_limit(self, limit: LimitRecord) -> None:
        self._write_one(
            'INSERT INTO rate_limits (name, "limit", period, burst, updated_at) '
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            '"limit" = excluded."limit", period = excluded.period, burst = excluded.burst, '
            "updated_at = excluded.updated_at",
            (limit.name, limit.limit, limit.period, limit.burst, limit.updated_at))

    def get_rate_limit(self, name: str) -> LimitRecord | None:
        row = self._read(f"{_LIMIT} WHERE name = ?", (name,)).fetchone()
        return None if row is None else _record(row)

    def list_rate_limits(self) -> list[LimitRecord]:
        return [_record(row) for row in self._read(f"{_LIMIT} ORDER BY name")]

    def delete_rate_limit(self, name: str) -> bool:
        self._conn()
        with self.db.write() as conn:
            conn.execute("DELETE FROM rate_buckets WHERE name = ? AND key = ''", (name,))
            return conn.execute("DELETE FROM rate_limits WHERE name = ?", (name,)).rowcount == 1

    def take_rate(self, name: str, weight: float, now: float, max_wait: float) -> Take:
        self._conn()
        with self.db.write() as conn:
            row = conn.execute(f"{_LIMIT} WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownRateLimit(name)
            limit = _record(row)
            if weight > limit.burst:
                raise ConfigurationError(
                    f"a weight of {weight:g} can never be taken from rate limit {name!r}: its "
                    f"burst is {limit.burst:g} (set a burst of at least {weight:g})")
            found = conn.execute("SELECT tat FROM rate_buckets WHERE name = ? AND key = ''",
                                 (name,)).fetchone()
            result = take(limit, None if found is None else float(found[0]), weight, now,
                          max_wait)
            if result.granted:
                conn.execute("INSERT INTO rate_buckets (name, key, tat) VALUES (?, '', ?) "
                             "ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat",
                             (name, result.tat))
        return result

    def pause_key(self, queue: str, key: str, until: float, reason: str | None,
                  now: float) -> None:
        """No run of `queue` whose key (its rate key, else its concurrency key) is `key` is
        claimed before `until` (a pause already longer stands). Expired pauses are deleted."""
        self._conn()
        with self.db.write() as conn:
            conn.execute("DELETE FROM paused_keys WHERE until <= ?", (now,))
            conn.execute(
                "INSERT INTO paused_keys (queue, key, until, reason, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue, key) DO UPDATE SET "
                "until = max(paused_keys.until, excluded.until), "
                "reason = CASE WHEN excluded.until >= paused_keys.until THEN excluded.reason "
                "ELSE paused_keys.reason END", (queue, key, until, reason, now))
        self.bus.publish(WORKERS, "paused")  # (their next wake-up time now includes its end)
