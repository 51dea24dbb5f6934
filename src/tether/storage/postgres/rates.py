"""Named rate limits and paused keys in PostgreSQL (a part of PostgresStorage): the limits' rows,
takes from their buckets (one transaction with the bucket row locked, so takes from any number of
workers on any number of machines are serialized), and pausing a queue's key (back-pressure)."""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigurationError, UnknownRateLimit
from tether.storage.postgres.access import Conn, PgAccess, Q
from tether.storage.rates import LimitRecord, Take, take
from tether.wakeup import WORKERS

_LIMIT = 'SELECT name, "limit", period, burst, updated_at FROM rate_limits'


def _record(row: dict[str, Any]) -> LimitRecord:
    return LimitRecord(row["name"], float(row["limit"]), float(row["period"]),
                       float(row["burst"]), float(row["updated_at"]))


class RateParts(PgAccess):
    """Named limits, their buckets, and paused keys."""

    def set_rate_limit(self, limit: LimitRecord) -> None:
        self._run(lambda conn: conn.execute(
            'INSERT INTO rate_limits (name, "limit", period, burst, updated_at) '
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            '"limit" = excluded."limit", period = excluded.period, burst = excluded.burst, '
            "updated_at = excluded.updated_at",
            (limit.name, limit.limit, limit.period, limit.burst, limit.updated_at)))

    def get_rate_limit(self, name: str) -> LimitRecord | None:
        row = self._one(f"{_LIMIT} WHERE name = %s", (name,))
        return None if row is None else _record(row)

    def list_rate_limits(self) -> list[LimitRecord]:
        return [_record(row) for row in self._all(f"{_LIMIT} ORDER BY name")]

    def delete_rate_limit(self, name: str) -> bool:
        def work(conn: Conn) -> bool:
            conn.execute("DELETE FROM rate_buckets WHERE name = %s AND key = ''", (name,))
            return conn.execute("DELETE FROM rate_limits WHERE name = %s", (name,)).rowcount == 1

        return self._tx(work)  # type: ignore[no-any-return]

    def take_rate(self, name: str, weight: float, now: float, max_wait: float) -> Take:
        def work(conn: Conn) -> Take:
            row = conn.execute(f"{_LIMIT} WHERE name = %s", (name,)).fetchone()
            if row is None:
                raise UnknownRateLimit(name)
            limit = _record(row)
            if weight > limit.burst:
                raise ConfigurationError(
                    f"a weight of {weight:g} can never be taken from rate limit {name!r}: its "
                    f"burst is {limit.burst:g} (set a burst of at least {weight:g})")
            # the bucket's row exists and is locked: takes of this limit wait on each other
            conn.execute("INSERT INTO rate_buckets (name, key, tat) VALUES (%s, '', %s) "
                         "ON CONFLICT DO NOTHING", (name, -1.0))
            found = conn.execute("SELECT tat FROM rate_buckets WHERE name = %s AND key = '' "
                                 "FOR UPDATE", (name,)).fetchone()
            tat = float(found["tat"]) if found is not None else -1.0
            result = take(limit, None if tat < 0 else tat, weight, now, max_wait)
            if result.granted:
                conn.execute("UPDATE rate_buckets SET tat = %s WHERE name = %s AND key = ''",
                             (result.tat, name))
            return result

        return self._tx(work)  # type: ignore[no-any-return]

    def pause_key(self, queue: str, key: str, until: float, reason: str | None,
                  now: float) -> None:
        """No run of `queue` whose key (its rate key, else its concurrency key) is `key` is
        claimed before `until` (a pause already longer stands). Expired pauses are deleted."""
        def work(conn: Conn) -> None:
            conn.execute("DELETE FROM paused_keys WHERE until <= %s", (now,))
            conn.execute(
                "INSERT INTO paused_keys (queue, key, until, reason, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (queue, key) DO UPDATE SET "
                "until = greatest(paused_keys.until, excluded.until), "
                "reason = CASE WHEN excluded.until >= paused_keys.until THEN excluded.reason "
                "ELSE paused_keys.reason END", (queue, key, until, reason, now))
            # (workers forget their next wake-up time: it now includes the pause's end)
            conn.execute(Q["notify"], (self._channel(WORKERS), "paused"))

        self._tx(work)
